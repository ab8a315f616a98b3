"""A small, bounded HTTP load generator for ``kcnn-serve``.

``run_load(url, body)`` keeps ``clients`` requests in flight against one of kcnn-serve's predict
routes until ``requests`` have completed (or ``max_seconds`` have passed) and reports throughput
and latency. ``protocol`` picks the route and the request a standard client of it sends
(:data:`PROTOCOLS`): ``"v1"`` (``POST /v1/predict`` with the image file), ``"tfserving"``
(``POST /v1/models/NAME/versions/V:predict``, ``{"instances": [{"b64": ...}]}``), ``"v2"``
(KServe V2 ``POST /v2/models/NAME/versions/V/infer`` with the binary tensor extension: V2 carries
preprocessed tensors, so a seeded random FP32 tensor of the model's input shape is sent instead of
the image), ``"v2json"`` (the same tensor as a flat JSON ``data`` list, as
``tritonclient.http`` sends it with ``binary_data=False``) or ``"grpc"`` (KServe V2 gRPC
``ModelInfer`` with ``raw_input_contents`` to ``grpc_address``, as ``tritonclient.grpc`` sends
it). The model's name, version and input come from ``GET /v1/metadata``.
Each client is a thread with one keep-alive ``http.client`` connection: far lighter on the CPU than
an asyncio httpx client (which manages ~60 requests/s with 32 connections on 2 cores)::

    from kcnn.export.loadtest import run_load
    run_load("http://127.0.0.1:8000", open("digit.png", "rb").read(), clients=32, requests=2000)
    # {'requests': 2000, 'errors': 0, 'requests_per_s': ..., 'images_per_s': ..., 'p50_ms': ..., ...}

Also a command: ``python -m kcnn.cli.loadtest URL FILE [--clients N] [--requests N]``.
"""
from __future__ import annotations

import base64
import collections
import http.client
import json
import threading
import time
import urllib.parse
import urllib.request

import numpy as np

from kcnn.export.checks import check_positive


#: The gRPC method the ``"grpc"`` protocol calls.
GRPC_METHOD = "/inference.GRPCInferenceService/ModelInfer"
_GIVE_UP_AFTER = 3  # transport failures in a row after which a client stops (server gone)

#: The predict routes :func:`run_load` can target (see the module doc).
PROTOCOLS = ("v1", "tfserving", "v2", "v2json", "grpc")


def _metadata(base: str, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(base + "/v1/metadata", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {base}/v1/metadata (is it a kcnn-serve server?): "
                         f"{err}") from None


def protocol_request(url: str, body: bytes, protocol: str = "v1",
                     content_type: str = "application/octet-stream", timeout: float = 30.0):
    """``(endpoint, body, headers)`` of the request :func:`run_load` repeats for ``protocol``."""
    base = url.rstrip("/").removesuffix("/v1/predict")
    if protocol == "v1":
        return base + "/v1/predict", bytes(body), {"content-type": content_type}
    meta = _metadata(base, timeout)
    name, version = meta["model"], meta["model_version"]
    if protocol == "tfserving":
        payload = {"instances": [{"b64": base64.b64encode(body).decode("ascii")}]}
        return (f"{base}/v1/models/{name}/versions/{version}:predict",
                json.dumps(payload).encode(), {"content-type": "application/json"})
    spec, output = meta["inputs"][0], meta["outputs"][0]
    shape = [1, *spec["shape"][1:]]
    tensor = np.random.default_rng(0).random(shape, dtype=np.float32)
    if protocol == "grpc":
        from kcnn.export.serving.grpc_v2 import grpc_predict_v2_pb2 as pb

        request = pb.ModelInferRequest(model_name=name, model_version=version,
                                       raw_input_contents=[tensor.tobytes()])
        request.inputs.add(name=spec["name"], datatype="FP32", shape=shape)
        request.outputs.add(name=output["name"])
        return GRPC_METHOD, request.SerializeToString(), {}
    endpoint = f"{base}/v2/models/{name}/versions/{version}/infer"
    if protocol == "v2json":
        payload = {"inputs": [{"name": spec["name"], "shape": shape, "datatype": "FP32",
                               "data": tensor.reshape(-1).tolist()}],
                   "outputs": [{"name": output["name"]}]}
        return endpoint, json.dumps(payload).encode(), {"content-type": "application/json"}
    header = json.dumps({
        "inputs": [{"name": spec["name"], "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes}}],
        "outputs": [{"name": output["name"], "parameters": {"binary_data": True}}],
    }).encode()
    return (endpoint, header + tensor.tobytes(),
            {"content-type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(header))})


def _http_sender(endpoint, body, headers, timeout):
    """A factory of per-client ``(send, close)``: one keep-alive connection each; ``send()``
    returns the HTTP status (an OSError/HTTPException is a transport failure)."""
    parts = urllib.parse.urlsplit(endpoint)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    target = parts.path + (f"?{parts.query}" if parts.query else "")

    def factory():
        state = {"connection": None}

        def close():
            if state["connection"] is not None:
                state["connection"].close()
            state["connection"] = None

        def send():
            if state["connection"] is None:
                state["connection"] = connection_class(parts.hostname, parts.port,
                                                       timeout=timeout)
            try:
                state["connection"].request("POST", target, body=body, headers=headers)
                response = state["connection"].getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                close()
                raise
            return response.status

        return send, close

    return factory


def _grpc_sender(address, body, timeout):
    """A factory of per-client ``(send, close)``: one gRPC channel each; ``send()`` returns 200
    for OK, else the status code's name. UNAVAILABLE and CANCELLED count as transport failures:
    they are what a call gets that a stopping server never started (HTTP's refused
    connection)."""
    import grpc

    def factory():
        channel = grpc.insecure_channel(address)
        call = channel.unary_unary(GRPC_METHOD)

        def send():
            try:
                call(body, timeout=timeout)
            except grpc.RpcError as err:
                if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise ConnectionError(err.details()) from None
                return err.code().name
            return 200

        return send, channel.close

    return factory


def _load(sender, clients, requests, timeout, max_seconds):
    """``clients`` threads, each with its own ``sender()``, share a budget of requests."""
    lock = threading.Lock()
    latencies, statuses, failures = [], collections.Counter(), collections.Counter()
    budget = [requests]
    start = time.perf_counter()
    deadline = start + max_seconds

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.perf_counter() >= deadline:
                return False
            budget[0] -= 1
            return True

    def client():
        send, close = sender()
        failed_in_a_row = 0
        while failed_in_a_row < _GIVE_UP_AFTER and take():
            t0 = time.perf_counter()
            try:
                status = send()
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures[type(exc).__name__] += 1
                failed_in_a_row += 1
                continue
            failed_in_a_row = 0
            elapsed = time.perf_counter() - t0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
        close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + timeout + 1.0)
    return latencies, statuses, failures, time.perf_counter() - start


def run_load(url: str, body: bytes, *, clients: int = 32, requests: int = 512,
             images_per_request: int = 1, content_type: str = "application/octet-stream",
             timeout: float = 30.0, max_seconds: float = 120.0, protocol: str = "v1",
             grpc_address: str | None = None) -> dict:
    """Send ``requests`` POSTs of ``body`` to ``url``'s predict route for ``protocol`` (one of
    :data:`PROTOCOLS`, see the module doc) from ``clients`` at once; ``"grpc"`` sends to
    ``grpc_address`` (``HOST:PORT``, the server's ``--grpc-port``) and reads the model from
    ``url``'s metadata.

    ``body`` is an image file's bytes (or a JSON payload with ``content_type="application/json"``
    holding ``images_per_request`` instances). Stops early after ``max_seconds``; a client stops
    after 3 transport failures in a row (server gone). Returns a dict:
    ``requests`` (completed), ``errors`` (non-200 answers + transport failures), ``seconds``,
    ``requests_per_s``, ``images_per_s`` (successful images per second), ``p50_ms``, ``p90_ms``,
    ``p99_ms``, ``max_ms`` (latency of successful requests), ``statuses`` and ``failures``.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http(s) URL of a kcnn-serve server, received: {url!r}")
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"body must be bytes, received: {type(body).__name__}")
    check_positive("clients", clients, integer=True)
    check_positive("requests", requests, integer=True)
    check_positive("images_per_request", images_per_request, integer=True)
    check_positive("timeout", timeout)
    check_positive("max_seconds", max_seconds)
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; received "
                         f"protocol={protocol!r}")
    if protocol == "grpc" and not (isinstance(grpc_address, str) and ":" in grpc_address):
        raise ValueError(f"protocol='grpc' needs grpc_address='HOST:PORT' (the server's "
                         f"--grpc-port), received: grpc_address={grpc_address!r}")
    endpoint, payload, headers = protocol_request(url, body, protocol, content_type, timeout)
    sender = (_grpc_sender(grpc_address, payload, timeout) if protocol == "grpc"
              else _http_sender(endpoint, payload, headers, timeout))
    latencies, statuses, failures, seconds = _load(
        sender, min(clients, requests), requests, timeout, max_seconds)
    done = sum(statuses.values()) + sum(failures.values())
    ok = len(latencies)
    ms = np.asarray(latencies) * 1000.0

    def pct(q):
        return float(np.percentile(ms, q)) if ok else None

    return {
        "requests": done,
        "errors": done - ok,
        "seconds": seconds,
        "clients": clients,
        "protocol": protocol,
        "requests_per_s": ok / seconds if seconds > 0 else 0.0,
        "images_per_s": ok * images_per_request / seconds if seconds > 0 else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": float(ms.max()) if ok else None,
        "statuses": dict(sorted((str(k), v) for k, v in statuses.items())),
        "failures": dict(failures),
    }

