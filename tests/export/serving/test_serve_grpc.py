"""kcnn-serve's KServe V2 gRPC server, end to end: ``kcnn-serve --grpc-port 0`` as a subprocess,
driven by Triton's official client (``tritonclient.grpc``) and its protobuf stubs over real
sockets on 127.0.0.1; answers compared with onnxruntime on the same file."""
import concurrent.futures
import subprocess

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from kcnn_serve_process import Server, serve_command
from tiny_models import export_tiny_classifier

NAME = "tiny"
MAX_INSTANCES = 8
MAX_MESSAGE = 64 * 1024
SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return export_tiny_classifier(tmp_path_factory.mktemp("grpc") / "tiny.onnx",
                                  labels=list("abcd"), model_name=NAME, seed=5)


@pytest.fixture(scope="module")
def server(onnx_path):
    server = Server(onnx_path, "--grpc-port", "0", "--max-instances", str(MAX_INSTANCES),
                    "--grpc-max-message-bytes", str(MAX_MESSAGE),
                    "--providers", "CPUExecutionProvider")
    yield server
    assert server.stop() == 0  # SIGTERM: gRPC and HTTP shut down gracefully together


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.grpc) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _reference(onnx_path, batch):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": batch})[0]


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


def _infer(client, batch, model=NAME, datatype="FP32", version=""):
    tensor = triton.InferInput("images", list(batch.shape), datatype)
    tensor.set_data_from_numpy(batch)
    return client.infer(model, [tensor], model_version=version,
                        outputs=[triton.InferRequestedOutput("logits")])


def test_live_ready_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME, "1")
    server_meta = client.get_server_metadata()
    assert server_meta.name == "kcnn" and server_meta.version
    meta = client.get_model_metadata(NAME, as_json=True)
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32",
                               "shape": ["-1", "28", "28", "1"]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_raw_infer_equals_onnxruntime(client, onnx_path):
    batch = _images(3)
    result = _infer(client, batch, version="1")
    np.testing.assert_allclose(result.as_numpy("logits"), _reference(onnx_path, batch),
                               rtol=1e-5, atol=1e-6)
    response = result.get_response()
    assert response.model_name == NAME and response.model_version == "1"


def test_typed_contents_and_request_id(stub, onnx_path):
    batch = _images(2, seed=1)
    request = pb.ModelInferRequest(model_name=NAME, id="req-7")
    tensor = request.inputs.add(name="images", datatype="FP32", shape=batch.shape)
    tensor.contents.fp32_contents.extend(batch.reshape(-1).tolist())
    response = stub.ModelInfer(request)
    assert response.id == "req-7" and list(response.outputs[0].shape) == [2, 4]
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(2, 4)
    np.testing.assert_allclose(logits, _reference(onnx_path, batch), rtol=1e-5, atol=1e-6)


def test_concurrent_clients(server, onnx_path):
    batches = [_images(1 + k % 3, seed=10 + k) for k in range(24)]

    def one(batch):
        with triton.InferenceServerClient(server.grpc) as own:
            return _infer(own, batch).as_numpy("logits")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, batches))
    for batch, logits in zip(batches, results):
        np.testing.assert_allclose(logits, _reference(onnx_path, batch), rtol=1e-5, atol=1e-6)


def _raw_request(batch_bytes, shape, datatype="FP32", name="images"):
    request = pb.ModelInferRequest(model_name=NAME)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    if batch_bytes is not None:
        request.raw_input_contents.append(batch_bytes)
    return request


ONE = _images(1).tobytes()
ERRORS = {
    "unknown model": (pb.ModelInferRequest(model_name="nope"), "NOT_FOUND", "unknown model"),
    "unknown version": (pb.ModelInferRequest(model_name=NAME, model_version="9"), "NOT_FOUND",
                        "unknown version"),
    "wrong shape": (_raw_request(ONE, [1, 28, 28]), "INVALID_ARGUMENT", "does not match"),
    "wrong datatype": (_raw_request(ONE, [1, 28, 28, 1], "FP64"), "INVALID_ARGUMENT",
                       "datatype 'FP64'"),
    "bad raw size": (_raw_request(ONE[:-4], [1, 28, 28, 1]), "INVALID_ARGUMENT",
                     "raw_input_contents holds 3132 bytes"),
    "unknown input": (_raw_request(ONE, [1, 28, 28, 1], name="x"), "INVALID_ARGUMENT",
                      "unknown input"),
    "no data": (_raw_request(None, [1, 28, 28, 1]), "INVALID_ARGUMENT", "fp32_contents"),
    "too many images": (_raw_request(_images(MAX_INSTANCES + 1).tobytes(),
                                     [MAX_INSTANCES + 1, 28, 28, 1]),
                        "RESOURCE_EXHAUSTED", "exceeds the limit"),
    "over the message limit": (_raw_request(b"\0" * MAX_MESSAGE, [1, 28, 28, 1]),
                               "RESOURCE_EXHAUSTED", ""),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_client_mistakes_get_their_status_code(stub, case):
    request, code, message = ERRORS[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request)
    assert raised.value.code().name == code, raised.value.details()
    assert message in raised.value.details()


def test_unknown_model_in_triton_client_and_metrics(client, server):
    with pytest.raises(InferenceServerException) as raised:
        _infer(client, _images(1), model="nope")
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("nope")
    _infer(client, _images(1))
    metrics = httpx.get(server.url + "/metrics", timeout=30).text
    assert 'kcnn_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"}' in metrics
    assert 'kcnn_grpc_requests_total{code="OK",method="ModelInfer"}' in metrics
    assert httpx.get(server.url + "/v1/health", timeout=30).json() == {"status": "ok"}


def test_non_protobuf_bytes_are_invalid_argument(server):
    with grpc.insecure_channel(server.grpc) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            call(b"\xff\xff\xff not protobuf", timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _fuzzed_requests():
    dims = st.lists(st.integers(-3, 40), max_size=5)
    tensor = st.fixed_dictionaries({
        "name": st.sampled_from(["images", "x", ""]),
        "datatype": st.sampled_from(["FP32", "FP16", "INT8", "BYTES", ""]),
        "shape": st.one_of(dims, st.just([1, 28, 28, 1]), st.just([2, 28, 28, 1])),
    })
    contents = st.one_of(st.none(), st.lists(st.floats(width=32), max_size=40),
                         st.lists(st.integers(-5, 5), max_size=8))

    @st.composite
    def request(draw):
        message = pb.ModelInferRequest(model_name=draw(st.sampled_from([NAME, "other", ""])),
                                       model_version=draw(st.sampled_from(["", "1", "2"])))
        for spec in draw(st.lists(tensor, max_size=2)):
            added = message.inputs.add(**spec)
            values = draw(contents)
            if values and isinstance(values[0], float):
                added.contents.fp32_contents.extend(values)
            elif values:
                added.contents.int_contents.extend(values)
        for raw in draw(st.lists(st.binary(max_size=64) | st.just(ONE), max_size=2)):
            message.raw_input_contents.append(raw)
        for name in draw(st.lists(st.sampled_from(["logits", "probs"]), max_size=2)):
            message.outputs.add(name=name)
        return message.SerializeToString()

    return st.one_of(request(), st.binary(max_size=80))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_fuzzed_requests())
def test_fuzzed_requests_never_internal(server, body):
    with grpc.insecure_channel(server.grpc) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            call(body, timeout=30)
        except grpc.RpcError as err:
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                err.code(), err.details(), body[:80])


def test_loadtest_over_grpc(server):
    from kcnn.export.loadtest import run_load

    result = run_load(server.url, b"", clients=4, requests=24, protocol="grpc",
                      grpc_address=server.grpc, max_seconds=60)
    assert result["requests"] == 24 and result["errors"] == 0, result
    assert result["statuses"] == {"200": 24} and result["p99_ms"] > 0
    with pytest.raises(ValueError, match="grpc_address"):
        run_load(server.url, b"", protocol="grpc")


def test_sigterm_under_grpc_and_http_load_exits_cleanly(onnx_path):
    import threading
    import time

    from kcnn.export.loadtest import run_load

    server = Server(onnx_path, "--grpc-port", "0", "--providers", "CPUExecutionProvider")
    results = {}

    def load(protocol):
        results[protocol] = run_load(server.url, b"", clients=4, requests=100000, timeout=10,
                                     max_seconds=30, protocol=protocol, grpc_address=server.grpc)

    threads = [threading.Thread(target=load, args=(p,)) for p in ("grpc", "v2")]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    start = time.monotonic()
    assert server.stop(timeout=15) == 0
    assert time.monotonic() - start < 10
    for thread in threads:
        thread.join(60)
    # calls in flight are answered; later ones find the server gone (UNAVAILABLE / refused)
    assert set(results) == {"grpc", "v2"}
    for protocol, result in results.items():
        assert set(result["statuses"]) == {"200"} and result["statuses"]["200"] > 0, result
    assert "Traceback" not in server.process.stderr.read()


def test_taken_grpc_port_is_a_usage_error(onnx_path, server):
    port = server.grpc.rsplit(":", 1)[1]
    done = subprocess.run([*serve_command(), str(onnx_path), "--port", "0", "--grpc-port", port],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot serve gRPC on 127.0.0.1:" + port in lines[0]
