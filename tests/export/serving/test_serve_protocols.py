"""kcnn-serve's standard protocols over real HTTP: KServe V2 (with tritonclient), TF Serving REST,
Prometheus /metrics, and --model-name / --model-version on every route."""
import base64
import io
import json

import httpx
import keras
import numpy as np
import pytest
from PIL import Image

from kcnn_serve_process import Server
from tiny_models import export_tiny_classifier

LABELS = [f"c{i}" for i in range(10)]
NAME, VERSION = "digits-net", "3"


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return export_tiny_classifier(tmp_path_factory.mktemp("protocols") / "tiny.onnx", labels=LABELS)


@pytest.fixture(scope="module")
def session(onnx_path):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def server(onnx_path):
    with Server(onnx_path, "--model-name", NAME, "--model-version", VERSION,
                "--max-body-bytes", "400000", "--max-instances", "32",
                "--providers", "CPUExecutionProvider") as server:
        yield server


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(3).random((5, 28, 28, 1), dtype=np.float32)


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, "PNG")
    return buffer.getvalue()


def _client(server):
    import tritonclient.http as triton

    return triton, triton.InferenceServerClient(server.url.removeprefix("http://"))


# --- KServe V2 with the official client -------------------------------------------------------
def test_v2_health_and_metadata_with_tritonclient(server):
    _, client = _client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME) and client.is_model_ready(NAME, VERSION)
    assert not client.is_model_ready("other")
    server_meta = client.get_server_metadata()
    assert server_meta["name"] == "kcnn" and "binary_tensor_data" in server_meta["extensions"]
    meta = client.get_model_metadata(NAME, VERSION)
    assert meta["name"] == NAME and meta["versions"] == [VERSION]
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata(NAME) == meta


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (False, False), (True, False),
                                                  (False, None)])
def test_v2_infer_with_tritonclient_matches_onnxruntime(server, session, batch, binary_in,
                                                        binary_out):
    triton, client = _client(server)
    tensor = triton.InferInput("images", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary_in)
    outputs = (None if binary_out is None
               else [triton.InferRequestedOutput("logits", binary_data=binary_out)])
    result = client.infer(NAME, [tensor], model_version=VERSION, outputs=outputs, request_id="7")
    expected = session.run(None, {"images": batch})[0]
    np.testing.assert_allclose(result.as_numpy("logits"), expected, atol=1e-5, rtol=0)
    response = result.get_response()
    assert response["model_name"] == NAME and response["model_version"] == VERSION
    assert response["id"] == "7"


def test_v2_infer_plain_json_nested_data(server, session, batch):
    body = {"inputs": [{"name": "images", "shape": [2, 28, 28, 1], "datatype": "FP32",
                        "data": batch[:2].tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "logits" and out["shape"] == [2, 10] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(out["data"], (2, 10)),
                               session.run(None, {"images": batch[:2]})[0], atol=1e-5)


def _v2(shape=(1, 28, 28, 1), datatype="FP32", name="images", data=None):
    count = int(np.prod(shape)) if all(isinstance(d, int) and d > 0 for d in shape) else 1
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                        "data": [0.5] * count if data is None else data}]}


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v2/models/other/infer", _v2(), 404, "unknown model"),
    (f"/v2/models/{NAME}/versions/9/infer", _v2(), 404, "unknown version"),
    (f"/v2/models/{NAME}/infer", _v2(shape=(1, 28, 28, 3)), 400, "shape"),
    (f"/v2/models/{NAME}/infer", _v2(datatype="INT32"), 400, "datatype"),
    (f"/v2/models/{NAME}/infer", _v2(name="pixels"), 400, "unknown input"),
    (f"/v2/models/{NAME}/infer", _v2(data=[0.5] * 10), 400, "values"),
    (f"/v2/models/{NAME}/infer", _v2(data=["x"] * 784), 400, "numbers"),
    (f"/v2/models/{NAME}/infer", {**_v2(), "outputs": [{"name": "probs"}]}, 400, "output"),
    (f"/v2/models/{NAME}/infer", _v2(shape=(33, 28, 28, 1)), 413, "limit"),
    (f"/v2/models/{NAME}/infer", {"inputs": "x"}, 400, "inputs"),
])
def test_v2_bad_requests_get_4xx_json(server, path, body, status, needle):
    r = httpx.post(server.url + path, content=json.dumps(body))
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_v2_bad_binary_and_oversized_and_unknown_metadata(server):
    url = f"{server.url}/v2/models/{NAME}/infer"
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": 784 * 4}}]}).encode()
    short = httpx.post(url, content=header + b"\0" * 100,
                       headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "binary" in short.json()["error"]
    bad_len = httpx.post(url, content=header, headers={"Inference-Header-Content-Length": "x"})
    assert bad_len.status_code == 400
    assert httpx.post(url, content=b"{" * 10).status_code == 400
    big = httpx.post(url, content=b" " * 400001)
    assert big.status_code == 413 and "error" in big.json()
    meta = httpx.get(f"{server.url}/v2/models/other")
    assert meta.status_code == 404 and "unknown model" in meta.json()["error"]
    assert httpx.get(f"{server.url}/v2/models/other/ready").status_code == 404
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


# --- TF Serving REST -------------------------------------------------------------------------
def test_tfserving_row_columnar_and_b64(server, session, batch, onnx_path):
    from kcnn.export import OnnxPredictor

    url = f"{server.url}/v1/models/{NAME}:predict"
    expected = session.run(None, {"images": batch})[0]
    rows = httpx.post(url, json={"instances": batch.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected, atol=1e-5)
    columns = httpx.post(f"{server.url}/v1/models/{NAME}/versions/{VERSION}:predict",
                         json={"inputs": {"images": batch[:2].tolist()}})
    np.testing.assert_allclose(columns.json()["outputs"], expected[:2], atol=1e-5)
    pixels = np.random.default_rng(4).integers(0, 256, (2, 20, 24), dtype=np.uint8)
    body = {"instances": [{"b64": base64.b64encode(_png(p)).decode()} for p in pixels]
            + [{"images": pixels[0].tolist()}]}
    got = httpx.post(url, json=body)
    assert got.status_code == 200, got.text
    predictor = OnnxPredictor(onnx_path, ["CPUExecutionProvider"])
    want = predictor.run(predictor.preprocess([pixels[0], pixels[1], pixels[0]]))
    np.testing.assert_allclose(got.json()["predictions"], want, atol=1e-5)


def test_tfserving_status(server):
    r = httpx.get(f"{server.url}/v1/models/{NAME}")
    assert r.status_code == 200
    assert r.json()["model_version_status"] == [
        {"version": VERSION, "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]
    assert httpx.get(f"{server.url}/v1/models/{NAME}/versions/{VERSION}").status_code == 200
    assert httpx.get(f"{server.url}/v1/models/{NAME}/versions/2").status_code == 404
    assert httpx.get(f"{server.url}/v1/models/other").status_code == 404


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v1/models/other:predict", {"instances": [[[0]]]}, 404, "Servable not found"),
    (f"/v1/models/{NAME}/versions/2:predict", {"instances": [[[0]]]}, 404, "Servable"),
    (f"/v1/models/{NAME}:predict", {"instances": [{"b64": "@@not base64@@"}]}, 400, "base64"),
    (f"/v1/models/{NAME}:predict",
     {"instances": [{"b64": base64.b64encode(b"not an image").decode()}]}, 400, "image"),
    (f"/v1/models/{NAME}:predict", {"instances": [np.zeros((28, 28, 3)).tolist()]}, 422, "shape"),
    (f"/v1/models/{NAME}:predict", {"instances": [[["a"]]]}, 400, "numbers"),
    (f"/v1/models/{NAME}:predict", {"instances": [[[0]]] * 33}, 413, "limit"),
    (f"/v1/models/{NAME}:predict", {"instances": [[[0]]], "inputs": [[[0]]]}, 400, "exactly one"),
    (f"/v1/models/{NAME}:predict", {"instances": []}, 400, "non-empty"),
    (f"/v1/models/{NAME}:predict", {"instances": [[[0]]], "signature_name": "x"}, 400,
     "signature"),
])
def test_tfserving_bad_requests_get_4xx_json(server, path, body, status, needle):
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


def test_tfserving_oversized_and_not_json(server):
    url = f"{server.url}/v1/models/{NAME}:predict"
    big = httpx.post(url, content=b" " * 400001)
    assert big.status_code == 413 and "error" in big.json()
    bad = httpx.post(url, content=b"{nope")
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]


# --- metadata and metrics --------------------------------------------------------------------
def test_v1_metadata_reports_name_and_version(server):
    meta = httpx.get(f"{server.url}/v1/metadata").json()
    assert meta["model"] == NAME and meta["model_version"] == VERSION


def _metrics(server):
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _get(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_errors_and_batches(server, batch):
    before = _metrics(server)
    route = "/v2/models/{name}/infer"
    for _ in range(3):
        assert httpx.post(f"{server.url}/v2/models/{NAME}/infer",
                          json=_v2(shape=(2, 28, 28, 1))).status_code == 200
    assert httpx.post(f"{server.url}/v2/models/other/infer", json=_v2()).status_code == 404
    assert httpx.post(f"{server.url}/v1/predict", content=_png(
        np.zeros((28, 28), np.uint8))).status_code == 200
    after = _metrics(server)
    ok = ("kcnn_http_requests_total", dict(route=route, method="POST", status="200"))
    assert _get(after, ok[0], **ok[1]) - _get(before, ok[0], **ok[1]) == 3
    assert (_get(after, "kcnn_http_requests_total", route=route, method="POST", status="404")
            - _get(before, "kcnn_http_requests_total", route=route, method="POST",
                   status="404")) == 1
    assert (_get(after, "kcnn_http_errors_total", route=route, status="404")
            - _get(before, "kcnn_http_errors_total", route=route, status="404")) == 1
    assert (_get(after, "kcnn_http_request_duration_seconds_count", route="/v1/predict")
            - _get(before, "kcnn_http_request_duration_seconds_count", route="/v1/predict")) == 1
    assert _get(after, "kcnn_inference_images_total") - _get(before, "kcnn_inference_images_total") \
        == 7
    calls = _get(after, "kcnn_batch_images_count") - _get(before, "kcnn_batch_images_count")
    assert 1 <= calls <= 4
    assert _get(after, "kcnn_batch_images_sum") - _get(before, "kcnn_batch_images_sum") == 7
    assert _get(after, "kcnn_batch_images_bucket", le="+Inf") == _get(after,
                                                                       "kcnn_batch_images_count")
    assert _get(after, "kcnn_queue_depth") == 0


def test_metrics_registries_are_per_app(onnx_path):
    from starlette.testclient import TestClient

    from kcnn.export import OnnxPredictor
    from kcnn.export.serving import create_app

    predictor = OnnxPredictor(onnx_path, ["CPUExecutionProvider"])
    first, second = create_app(predictor), create_app(predictor, model_name="b")
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/v1/health")
        text = two.get("/metrics").text
        assert 'route="/v1/health"' not in text
        assert 'route="/v1/health"' in one.get("/metrics").text
        assert two.get("/v2/models/b").json()["name"] == "b"


# --- finite inputs that overflow the model: a 4xx, never a 500 or a NaN in JSON ---------------
HUGE = np.full((1, 28, 28, 1), 1e10, np.float32)  # finite; x 1e30 inside the model: inf


@pytest.fixture(scope="module")
def overflow_server(tmp_path_factory):
    from kcnn.export import export_onnx

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((28, 28, 1), name="images"), keras.layers.Rescaling(1e30),
                              keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    path = tmp_path_factory.mktemp("overflow") / "overflow.onnx"
    export_onnx(model, str(path), labels=LABELS, model_name="overflow")
    with Server(path, "--model-name", NAME, "--providers", "CPUExecutionProvider") as server:
        yield server, path


@pytest.mark.parametrize("path, body", [
    ("/v1/predict", {"instances": HUGE.tolist()}),
    (f"/v2/models/{NAME}/infer", _v2(data=HUGE.ravel().tolist())),
    (f"/v1/models/{NAME}:predict", {"instances": HUGE.tolist()}),
])
def test_inputs_that_overflow_the_logits_are_422_on_every_route(overflow_server, path, body):
    import onnxruntime as ort

    server, onnx_file = overflow_server
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert not np.isfinite(session.run(None, {"images": HUGE})[0]).all()  # the premise
    response = httpx.post(server.url + path, content=json.dumps(body),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 422, response.text
    assert "non-finite" in response.json()["error"]
    ok = httpx.post(server.url + "/v1/predict", timeout=30, json={"instances": [[[[0.5]] * 28] * 28]})
    assert ok.status_code == 200, ok.text  # the server is fine afterwards


# --- a model that loads but fails inside onnxruntime: kcnn-serve refuses to start -----------
def test_a_model_failing_in_onnxruntime_is_refused_at_start_up(onnx_path, tmp_path):
    import subprocess

    import onnx
    from onnx import helper, numpy_helper

    from kcnn_serve_process import serve_command

    proto = onnx.load(str(onnx_path))
    graph = proto.graph
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_raw"
    # 10 scores per image never reshape to 3 rows: onnxruntime fails at run time, not at load.
    graph.initializer.append(numpy_helper.from_array(np.array([3, -1], np.int64), "bad_shape"))
    graph.node.append(helper.make_node("Reshape", ["logits_raw", "bad_shape"], ["logits"]))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    proc = subprocess.run(serve_command() + [str(broken), "--port", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "fails in onnxruntime" in lines[0], proc.stderr
    assert "serving" not in proc.stdout and "Traceback" not in proc.stderr


# --- the load generator speaks every protocol --------------------------------------------
@pytest.mark.parametrize("protocol", ["v1", "tfserving", "v2", "v2json"])
def test_loadtest_on_every_protocol(server, protocol):
    from kcnn.export.loadtest import run_load

    digit = (np.random.default_rng(5).random((28, 28)) * 255).astype(np.uint8)
    result = run_load(server.url, _png(digit), clients=4, requests=24, protocol=protocol,
                      content_type="image/png", max_seconds=60)
    assert result["protocol"] == protocol
    assert result["requests"] == 24 and result["errors"] == 0, result
    assert result["statuses"] == {"200": 24} and result["p99_ms"] > 0


def test_loadtest_command_with_a_protocol(server, tmp_path):
    import subprocess
    import sys

    image = tmp_path / "digit.png"
    image.write_bytes(_png(np.zeros((28, 28), np.uint8)))
    command = [sys.executable, "-m", "kcnn.cli.loadtest"]
    proc = subprocess.run(command + [server.url, str(image), "--protocol", "v2", "--requests", "8",
                                     "--clients", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["statuses"] == {"200": 8}
    gone = subprocess.run(command + ["http://127.0.0.1:9", str(image), "--protocol", "tfserving"],
                          capture_output=True, text=True, timeout=120)
    lines = gone.stderr.strip().splitlines()
    assert gone.returncode == 2 and len(lines) == 1 and "/v1/metadata" in lines[0], gone.stderr
