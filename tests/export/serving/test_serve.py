"""kcnn-serve: the micro-batcher, request parsing, and the server as a subprocess over real HTTP."""
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import keras
import numpy as np
import pytest
from PIL import Image

from kcnn_serve_process import Server
from kcnn_serve_process import serve_command as _serve_command

from kcnn.export.serving.batcher import BatcherStopped, MicroBatcher
from kcnn.export.serving.requests import (RequestError, decode_image, instance_array,
                                          parse_json_body, parse_multipart_body, parse_top_k)

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# --------------------------------------------------------------------------------------------------
# MicroBatcher (no model, no HTTP)
# --------------------------------------------------------------------------------------------------
class Recorder:
    """A batch function that records batch sizes and answers row sums, slowly enough to pile up."""

    def __init__(self, delay=0.0, fail=False):
        self.sizes, self.delay, self.fail = [], delay, fail
        self.threads = set()

    def __call__(self, batch):
        self.threads.add(threading.get_ident())
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        if self.fail:
            raise ValueError("boom")
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


async def _submit_all(batcher, arrays):
    return await asyncio.gather(*(batcher.submit(a) for a in arrays), return_exceptions=True)


def test_batcher_merges_concurrent_requests():
    run = Recorder(delay=0.02)
    arrays = [np.full((1, 2, 2), i, np.float32) for i in range(32)]

    async def main():
        async with MicroBatcher(run, max_batch=8, max_wait_ms=20) as batcher:
            return await _submit_all(batcher, arrays), batcher.stats.as_dict()

    results, stats = asyncio.run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, [[4.0 * i]])
    assert sum(run.sizes) == 32 and max(run.sizes) <= 8
    assert len(run.sizes) < 32  # merged: 4 calls of 8 when nothing else interferes
    assert run.threads and threading.get_ident() not in run.threads  # ran off the event loop
    assert stats["requests"] == 32 and stats["images"] == 32 and stats["calls"] == len(run.sizes)
    assert stats["max_batch_size"] <= 8


def test_batcher_keeps_request_rows_together_and_slices_large_requests():
    run = Recorder()
    arrays = [np.arange(n * 3, dtype=np.float32).reshape(n, 3) + n for n in (3, 2, 10, 1)]

    async def main():
        async with MicroBatcher(run, max_batch=4, max_wait_ms=10) as batcher:
            return await _submit_all(batcher, arrays)

    results = asyncio.run(main())
    for array, result in zip(arrays, results):
        np.testing.assert_allclose(result[:, 0], array.sum(axis=1))
    assert max(run.sizes) <= 4 and sum(run.sizes) == 16


def test_batcher_waits_only_for_requests_on_their_way():
    async def timed(batcher, n, expecting=False):
        start = time.perf_counter()
        if expecting:
            with batcher.expecting():  # a request being read that never submits
                await _submit_all(batcher, [np.ones((1, 1), np.float32)] * n)
        else:
            await _submit_all(batcher, [np.ones((1, 1), np.float32)] * n)
        return time.perf_counter() - start

    async def main():
        async with MicroBatcher(Recorder(), max_batch=2, max_wait_ms=5000) as batcher:
            full = await timed(batcher, 2, expecting=True)
            lone = await timed(batcher, 1)
        async with MicroBatcher(Recorder(), max_batch=8, max_wait_ms=150) as batcher:
            waited = await timed(batcher, 1, expecting=True)
        return full, lone, waited

    full, lone, waited = asyncio.run(main())
    assert full < 2.5  # closed by size, not by the 5 s wait
    assert lone < 2.5  # nobody else on the way: no wait
    assert waited >= 0.14  # another request announced: waited for it up to max_wait_ms


def test_batcher_errors_reach_every_request_and_batcher_survives():
    run = Recorder(fail=True)

    async def main():
        async with MicroBatcher(run, max_batch=8, max_wait_ms=10) as batcher:
            failed = await _submit_all(batcher, [np.ones((1, 2), np.float32)] * 3)
            run.fail = False
            ok = await batcher.submit(np.ones((2, 2), np.float32))
            return failed, ok, batcher.stats.errors

    failed, ok, errors = asyncio.run(main())
    assert all(isinstance(f, ValueError) and "boom" in str(f) for f in failed)
    np.testing.assert_array_equal(ok, [[2.0], [2.0]])
    assert errors >= 1


def test_batcher_stop_fails_pending_requests():
    release = threading.Event()

    def blocking(batch):
        release.wait(10)
        return batch

    async def main():
        batcher = MicroBatcher(blocking, max_batch=1, max_wait_ms=0)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(np.ones((1, 1)))) for _ in range(3)]
        await asyncio.sleep(0.05)  # first request in flight, two queued
        asyncio.get_running_loop().call_later(0.05, release.set)
        await batcher.stop()
        results = await asyncio.gather(*pending, return_exceptions=True)
        with pytest.raises(BatcherStopped):
            await batcher.submit(np.ones((1, 1)))
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, BatcherStopped) for r in results)


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_batch": 2.5}, {"max_batch": True},
                                    {"max_wait_ms": -1}, {"max_wait_ms": float("nan")}])
def test_batcher_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MicroBatcher(lambda b: b, **kwargs)


# --------------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------------
def _png(array, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("convert, shape", [("L", (5, 7)), ("RGB", (5, 7, 3)), ("RGBA", (5, 7, 3)),
                                            ("P", (5, 7, 3)), ("1", (5, 7)), ("I;16", (5, 7))])
def test_decode_image_modes(convert, shape, rng):
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(convert if convert != "I;16" else "L")
    if convert == "I;16":
        image = Image.fromarray((np.asarray(image).astype(np.uint16) * 257))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == shape and decoded.dtype == np.uint8
    if convert in ("L", "I;16"):
        np.testing.assert_array_equal(decoded, np.asarray(Image.fromarray(rgb).convert("L")))
    if convert == "RGB":
        np.testing.assert_array_equal(decoded, rgb)


def test_decode_image_jpeg(rng):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue()).shape == (8, 6, 3)


@pytest.mark.parametrize("body", [b"", b"not an image", _png(np.zeros((4, 4), np.uint8))[:30]])
def test_decode_image_rejects_non_images(body):
    with pytest.raises(RequestError) as info:
        decode_image(body)
    assert info.value.status == 400


def test_decode_image_rejects_huge_images(monkeypatch):
    from kcnn.export.serving import requests

    monkeypatch.setattr(requests, "MAX_IMAGE_PIXELS", 100)
    assert decode_image(_png(np.zeros((10, 10), np.uint8))).shape == (10, 10)
    with pytest.raises(RequestError, match="exceeds") as info:
        decode_image(_png(np.zeros((10, 11), np.uint8)))
    assert info.value.status == 413


def test_instance_array_dtypes():
    assert instance_array([[0, 255], [1, 2]], 0).dtype == np.uint8
    floats = instance_array([[0.5, 1.0], [0, 2]], 0)
    assert floats.dtype == np.float32 and floats.shape == (2, 2)


@pytest.mark.parametrize("value, status, match", [
    ([[1, 2], [3]], 400, "rectangular"),
    ([["a", "b"]], 400, "numbers"),
    ([[True, False]], 400, "numbers"),
    ([], 400, "non-empty"),
    ({"a": 1}, 400, "nested list"),
    ([[1, 256]], 422, r"\[0, 255\]"),
    ([[-1, 0]], 422, r"\[0, 255\]"),
    ([[float("nan"), 0.0]], 422, "NaN"),
])
def test_instance_array_rejects(value, status, match):
    with pytest.raises(RequestError, match=match) as info:
        instance_array(value, 3)
    assert info.value.status == status and "instances[3]" in info.value.message


@pytest.mark.parametrize("body, match", [
    (b"{", "not valid JSON"),
    (b"[1, 2]", "object"),
    (b'{"instances": []}', "non-empty list"),
    (b'{"images": [[1]]}', "unknown JSON field"),
    (b"[" * 100000 + b"]" * 100000, "JSON"),
])
def test_parse_json_body_rejects(body, match):
    with pytest.raises(RequestError, match=match) as info:
        parse_json_body(body)
    assert info.value.status == 400


def test_parse_json_body_limits_instances():
    arrays, top_k = parse_json_body(b'{"instances": [[[1]], [[2.5]]], "top_k": 2}', 2)
    assert [a.dtype for a in arrays] == [np.uint8, np.float32] and top_k == 2
    with pytest.raises(RequestError, match="limit of 2") as info:
        parse_json_body(b'{"instances": [[[1]], [[1]], [[1]]]}', 2)
    assert info.value.status == 413


def _multipart(files, data=None):
    request = httpx.Request("POST", "http://127.0.0.1/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_parse_multipart_body():
    body, content_type = _multipart(
        [("a", ("a.png", b"first\r\n--x", "image/png")), ("b", ("b.bin", b"second", None))],
        {"top_k": "3", "other": "ignored"})
    assert asyncio.run(parse_multipart_body(body, content_type)) == (
        [b"first\r\n--x", b"second"], "3")


@pytest.mark.parametrize("kwargs, files, data", [
    ({"max_files": 2}, 3, {}),
    ({"max_fields": 1}, 1, {"top_k": "1", "other": "x"}),
    ({"max_field_bytes": 10}, 1, {"top_k": "1" * 11}),
])
def test_parse_multipart_body_limits_get_413(kwargs, files, data):
    body, content_type = _multipart(
        [("file", (f"{i}.png", b"x", "image/png")) for i in range(files)], data)
    with pytest.raises(RequestError, match="limit") as info:
        asyncio.run(parse_multipart_body(body, content_type, **kwargs))
    assert info.value.status == 413


@pytest.mark.parametrize("body, content_type", [
    _multipart(None, {"top_k": "3"}),
    (b"garbage", "multipart/form-data; boundary=zzz"),
    (b"garbage", "multipart/form-data"),
])
def test_parse_multipart_body_rejects(body, content_type):
    with pytest.raises(RequestError, match="multipart") as info:
        asyncio.run(parse_multipart_body(body, content_type))
    assert info.value.status == 400


@pytest.mark.parametrize("value, expected", [("3", 3), (" 10 ", 10), (1, 1)])
def test_parse_top_k(value, expected):
    assert parse_top_k(value, 10, "query") == expected


@pytest.mark.parametrize("value", ["0", "11", "x", "2.5", "", 0, 11, 2.0, True, None, [1]])
def test_parse_top_k_rejects(value):
    with pytest.raises(RequestError, match="top_k") as info:
        parse_top_k(value, 10, "query")
    assert info.value.status == 400


# --------------------------------------------------------------------------------------------------
# The server, as a subprocess over real HTTP
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((28, 28, 1), name="images"),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model(np.zeros((1, 28, 28, 1), np.float32))
    return model


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, keras_model):
    from kcnn.export import export_onnx

    path = tmp_path_factory.mktemp("serve") / "tiny.onnx"
    export_onnx(keras_model, str(path), labels=LABELS, model_name="tiny")
    return path


@pytest.fixture(scope="module")
def predictor(onnx_path):
    from kcnn.export import OnnxPredictor

    return OnnxPredictor(str(onnx_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def server(onnx_path):
    server = Server(onnx_path, "--max-wait-ms", "20", "--max-batch", "64",
                    "--max-body-bytes", "300000", "--providers", "CPUExecutionProvider")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)


def _top(prediction):
    return prediction["label"], prediction["score"]


def test_health_and_metadata(server):
    assert httpx.get(server.url + "/v1/health").json() == {"status": "ok"}
    meta = httpx.get(server.url + "/v1/metadata").json()
    assert meta["labels"] == LABELS and meta["model"] == "tiny"
    assert meta["provider"] == "CPUExecutionProvider"
    assert meta["inputs"][0] == {"name": "images", "shape": [None, 28, 28, 1],
                                 "type": "tensor(float)"}
    assert meta["outputs"][0]["name"] == "logits" and meta["outputs"][0]["shape"] == [None, 10]
    assert meta["preprocessing"]["input_size"] == [28, 28]
    assert meta["limits"]["max_body_bytes"] == 300000 and meta["limits"]["max_instances"] == 256
    assert server.url.startswith("http://127.0.0.1:")


def test_png_prediction_matches_predictor_and_keras(server, predictor, keras_model, digits):
    expected = predictor.predict(digits, top_k=3)
    logits = keras.ops.convert_to_numpy(keras_model(predictor.preprocess(digits)))
    for i, image in enumerate(digits):
        response = httpx.post(server.url + "/v1/predict?top_k=3", content=_png(image),
                              headers={"content-type": "image/png"})
        assert response.status_code == 200, response.text
        (got,) = response.json()["predictions"]
        assert got["label"] == expected.labels[i][0]
        assert got["index"] == expected.indices[i][0]
        assert got["score"] == pytest.approx(float(expected.scores[i][0]), abs=1e-6)
        assert [t["label"] for t in got["top_k"]] == expected.labels[i]
        np.testing.assert_allclose([t["score"] for t in got["top_k"]], expected.scores[i],
                                   atol=1e-6)
        first, second = np.sort(logits[i])[::-1][:2]
        if first - second > 1e-4:  # the Keras model agrees wherever its top-1 is not a near tie
            assert got["label"] == LABELS[int(np.argmax(logits[i]))]


def test_json_batch_of_pixels_and_floats(server, predictor, digits):
    floats = predictor.preprocess(digits[:2])
    instances = [digits[0].tolist(), digits[1][:, :, None].tolist()] + floats.tolist()
    response = httpx.post(server.url + "/v1/predict", json={"instances": instances, "top_k": 2})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    want = predictor.predict(digits[:2], top_k=2)
    assert len(got) == 4
    for g, i in zip(got, [0, 1, 0, 1]):
        assert [t["label"] for t in g["top_k"]] == want.labels[i]
        assert g["score"] == pytest.approx(float(want.scores[i][0]), abs=1e-6)


def test_json_sent_as_form_data_and_top_k_conflicts(server, digits):
    body = json.dumps({"instances": [digits[0].tolist()]}).encode()
    response = httpx.post(server.url + "/v1/predict", content=body,  # what curl -d sends
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    body = json.dumps({"instances": [digits[0].tolist()], "top_k": 2}).encode()
    response = httpx.post(server.url + "/v1/predict?top_k=2", content=body)
    assert response.status_code == 400 and "top_k" in response.json()["error"]


def test_multipart_upload(server, predictor, digits):
    files = [("file", (f"{i}.png", _png(digits[i]), "image/png")) for i in range(2)]
    response = httpx.post(server.url + "/v1/predict", files=files, data={"top_k": "2"})
    assert response.status_code == 200, response.text
    want = predictor.predict(digits[:2], top_k=2)
    assert [[t["label"] for t in p["top_k"]] for p in response.json()["predictions"]] == want.labels
    response = httpx.post(server.url + "/v1/predict", files={"top_k": (None, "2")})  # no file
    assert response.status_code == 400 and "file part" in response.json()["error"]


def test_concurrent_requests_are_batched(server, digits):
    before = httpx.get(server.url + "/v1/stats").json()
    bodies = [_png(digits[i % len(digits)]) for i in range(32)]
    barrier = threading.Barrier(32, timeout=30)

    def call(body):
        barrier.wait()
        return client.post(server.url + "/v1/predict", content=body)

    limits = httpx.Limits(max_connections=32)
    with httpx.Client(timeout=60, limits=limits) as client, ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(call, bodies))
    assert [r.status_code for r in responses] == [200] * 32
    labels = [r.json()["predictions"][0]["label"] for r in responses]
    assert labels == [labels[i % len(digits)] for i in range(32)]
    after = httpx.get(server.url + "/v1/stats").json()
    assert after["images"] - before["images"] == 32
    assert after["calls"] - before["calls"] < 32
    assert after["max_batch_size"] > 1


@pytest.mark.parametrize("content, headers, status", [
    (b"definitely not an image", {"content-type": "image/png"}, 400),
    (b"", {}, 400),
    (b"{not json", {"content-type": "application/json"}, 400),
    (b'{"instances": [[[1, 2], [3]]]}', {"content-type": "application/json"}, 400),
    (b'{"instances": [[1, 2], [3]]}', {"content-type": "application/json"}, 422),
    (b'{"instances": "x"}', {"content-type": "application/json"}, 400),
    (json.dumps({"instances": [np.ones((1, 1, 1, 1, 1), int).tolist()]}).encode(),
     {"content-type": "application/json"}, 422),
    (json.dumps({"instances": [np.zeros((27, 28, 1)).tolist()]}).encode(),
     {"content-type": "application/json"}, 422),
    (json.dumps({"instances": [np.zeros((28, 28, 5), int).tolist()]}).encode(),
     {"content-type": "application/json"}, 422),
    (json.dumps({"instances": [np.zeros((2, 28, 28, 1), int).tolist()]}).encode(),
     {"content-type": "application/json"}, 422),
    (json.dumps({"instances": [[[1]]], "top_k": 0}).encode(),
     {"content-type": "application/json"}, 400),
])
def test_bad_payloads_get_4xx_json(server, content, headers, status):
    response = httpx.post(server.url + "/v1/predict", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]


@pytest.mark.parametrize("query", ["top_k=0", "top_k=11", "top_k=abc"])
def test_bad_top_k_query(server, digits, query):
    response = httpx.post(f"{server.url}/v1/predict?{query}", content=_png(digits[0]))
    assert response.status_code == 400 and "top_k" in response.json()["error"]


def test_oversize_bodies_get_413(server):
    big = b"\x89PNG" + b"\0" * 400000
    response = httpx.post(server.url + "/v1/predict", content=big)
    assert response.status_code == 413 and "limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(10):
            yield b"\0" * 50000

    response = httpx.post(server.url + "/v1/predict", content=chunks())
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert httpx.get(server.url + "/v1/health").status_code == 200


def test_too_many_instances_get_413(server):
    body = {"instances": [[[0]]] * 300}  # the fixture's server allows 256
    response = httpx.post(server.url + "/v1/predict", json=body)
    assert response.status_code == 413 and "instances" in response.json()["error"]


def test_too_many_multipart_files_get_413(server, digits):
    files = [("file", (f"{i}.png", _png(digits[0]), "image/png")) for i in range(257)]
    response = httpx.post(server.url + "/v1/predict", files=files)  # the server allows 256
    assert response.status_code == 413 and "files" in response.json()["error"]


def test_unknown_route_and_wrong_method(server):
    response = httpx.get(server.url + "/v1/nope")
    assert response.status_code == 404 and response.json()["error"]
    response = httpx.get(server.url + "/v1/predict")
    assert response.status_code == 405 and response.json()["error"]
    assert "POST" in response.headers["allow"]


def test_loadtest_against_server(server, digits):
    from kcnn.export.loadtest import run_load

    result = run_load(server.url, _png(digits[0]), clients=8, requests=40, max_seconds=60)
    assert result["requests"] == 40 and result["errors"] == 0
    assert result["images_per_s"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    with pytest.raises(ValueError, match="clients"):
        run_load(server.url, b"x", clients=0)
    with pytest.raises(ValueError, match="url"):
        run_load("127.0.0.1:80", b"x")


def test_loadtest_gives_up_on_a_dead_server():
    from kcnn.export.loadtest import run_load

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    result = run_load(f"http://127.0.0.1:{port}", b"x", clients=2, requests=1000, timeout=5)
    assert result["errors"] == result["requests"] <= 6 and result["p50_ms"] is None


def test_sigterm_shuts_down_cleanly_under_load(onnx_path, digits):
    from kcnn.export.loadtest import run_load

    server = Server(onnx_path)
    response = httpx.post(server.url + "/v1/predict", content=_png(digits[0]))
    assert response.status_code == 200
    results = []
    load = threading.Thread(target=lambda: results.append(run_load(
        server.url, _png(digits[1]), clients=4, requests=100000, max_seconds=30)))
    load.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert server.stop(timeout=15) == 0
    assert time.monotonic() - start < 10
    load.join(60)
    (result,) = results
    # requests in flight are answered; later ones find the server gone, none gets a 5xx
    assert set(result["statuses"]) == {"200"} and result["statuses"]["200"] > 0
    assert "Traceback" not in server.process.stderr.read()


@pytest.mark.parametrize("args, match", [
    (["/nonexistent/model.onnx"], "not found"),
    (["{onnx}", "--port", "70000"], "port"),
    (["{onnx}", "--max-batch", "0"], "max-batch"),
    (["{junk}"], "junk.onnx"),
    (["{onnx}", "--port", "{busy}"], "ddress"),
    (["{onnx}", "--providers", "NoSuchExecutionProvider"], "providers"),
])
def test_cli_errors_exit_2_with_one_line(args, match, onnx_path, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx file")
    with socket.create_server(("127.0.0.1", 0)) as busy:  # a port that is taken
        argv = [a.format(onnx=onnx_path, junk=junk, busy=busy.getsockname()[1]) for a in args]
        result = subprocess.run([*_serve_command(), *argv], capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.stderr


# --------------------------------------------------------------------------------------------------
# One decoder: the same odd image files give the same prediction on every path
# --------------------------------------------------------------------------------------------------
COLOURS = ["red", "green", "blue", "cyan", "magenta"]


@pytest.fixture(scope="module")
def rgb_onnx(tmp_path_factory):
    from kcnn.export import export_onnx

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, strides=2),
                              keras.layers.Flatten(), keras.layers.Dense(len(COLOURS))])
    path = tmp_path_factory.mktemp("rgb") / "colours.onnx"
    export_onnx(model, str(path), labels=COLOURS)
    return path


def _scores(top_k):
    """``[{"label", "score"}, ...]`` -> label -> score."""
    return {item["label"]: item["score"] for item in top_k}


@pytest.mark.slow
def test_odd_images_get_one_prediction_on_every_path(rgb_onnx, tmp_path):
    from kcnn.export import OnnxPredictor
    from odd_images import write_odd_images

    odd = write_odd_images(tmp_path)
    names, paths = list(odd), [odd[name][0] for name in odd]
    k = len(COLOURS)
    predictor = OnnxPredictor(rgb_onnx, providers=["CPUExecutionProvider"])
    direct = []
    for path in paths:
        with Image.open(path) as image:
            direct.append(_scores(predictor.predict(image, top_k=k).to_list()[0]))

    script = os.path.join(os.path.dirname(sys.executable), "kcnn-predict")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "kcnn.cli.predict"]
    proc = subprocess.run([*command, str(rgb_onnx), *map(str, paths), "--json", "--top-k", str(k)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cli = [_scores(p["top_k"]) for p in json.loads(proc.stdout)["predictions"]]

    server = Server(rgb_onnx, "--providers", "CPUExecutionProvider")
    try:
        bodies = [httpx.post(f"{server.url}/v1/predict?top_k={k}", content=path.read_bytes(),
                             headers={"content-type": "application/octet-stream"})
                  for path in paths]
        files = [("file", (path.name, path.read_bytes(), "application/octet-stream"))
                 for path in paths]
        form = httpx.post(server.url + "/v1/predict", files=files, data={"top_k": str(k)})
    finally:
        server.stop()
    assert [r.status_code for r in bodies] == [200] * len(paths) and form.status_code == 200
    http = [_scores(r.json()["predictions"][0]["top_k"]) for r in bodies]
    uploaded = [_scores(p["top_k"]) for p in form.json()["predictions"]]

    for i, name in enumerate(names):
        expected = _scores(predictor.predict(odd[name][1], top_k=k).to_list()[0])
        for got in (direct[i], cli[i], http[i], uploaded[i]):
            assert got.keys() == expected.keys(), name
            np.testing.assert_allclose([got[c] for c in COLOURS], [expected[c] for c in COLOURS],
                                       atol=1e-6, err_msg=name)
    # The EXIF orientation matters to this model: the unrotated pixels score differently.
    with Image.open(odd["exif_rotated_jpeg"][0]) as image:
        unrotated = _scores(predictor.predict(np.asarray(image), top_k=k).to_list()[0])
    assert not np.allclose([unrotated[c] for c in COLOURS], [direct[0][c] for c in COLOURS],
                           atol=1e-4)


@pytest.mark.parametrize("text", ["\u00b2", "1\u00b9", "9" * 5000, "\u0663"])
def test_top_k_digits_int_rejects_are_400(text):
    """Strings str.isdigit() accepts but int() refuses are a client error, not a 500."""
    with pytest.raises(RequestError) as info:
        parse_top_k(text, 10, "query parameter")
    assert info.value.status == 400
