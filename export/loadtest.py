"""A small, bounded HTTP load generator for ``kcnn-serve``.

``run_load(url, body)`` keeps ``clients`` requests in flight against one of kcnn-serve's predict
routes until ``requests`` have completed (or ``max_seconds`` have passed) and reports throughput
and latency. ``protocol`` picks the route and the request a standard client of it sends
(:data:`PROTOCOLS`): ``"v1"`` (``POST /v1/predict`` with the image file), ``"tfserving"``
(``POST /v1/models/NAME/versions/V:predict``, ``{"instances": [{"b64": ...}]}``) or ``"v2"``
(KServe V2 ``POST /v2/models/NAME/versions/V/infer`` with the binary tensor extension: V2 carries
preprocessed tensors, so a seeded random FP32 tensor of the model's input shape is sent instead of
the image). The model's name, version and input come from ``GET /v1/metadata``.
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


_GIVE_UP_AFTER = 3  # transport failures in a row after which a client stops (server gone)

#: The predict routes :func:`run_load` can target (see the module doc).
PROTOCOLS = ("v1", "tfserving", "v2")


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
    header = json.dumps({
        "inputs": [{"name": spec["name"], "shape": shape, "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes}}],
        "outputs": [{"name": output["name"], "parameters": {"binary_data": True}}],
    }).encode()
    return (f"{base}/v2/models/{name}/versions/{version}/infer", header + tensor.tobytes(),
            {"content-type": "application/octet-stream",
             "Inference-Header-Content-Length": str(len(header))})


def _load(endpoint, body, headers, clients, requests, timeout, max_seconds):
    """``clients`` threads, each with one keep-alive connection, share a budget of requests."""
    parts = urllib.parse.urlsplit(endpoint)
    connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                        else http.client.HTTPConnection)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
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
        connection, failed_in_a_row = None, 0
        while failed_in_a_row < _GIVE_UP_AFTER and take():
            t0 = time.perf_counter()
            try:
                if connection is None:
                    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
                connection.request("POST", target, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures[type(exc).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
                failed_in_a_row += 1
                continue
            failed_in_a_row = 0
            elapsed = time.perf_counter() - t0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()) + timeout + 1.0)
    return latencies, statuses, failures, time.perf_counter() - start


def run_load(url: str, body: bytes, *, clients: int = 32, requests: int = 512,
             images_per_request: int = 1, content_type: str = "application/octet-stream",
             timeout: float = 30.0, max_seconds: float = 120.0, protocol: str = "v1") -> dict:
    """Send ``requests`` POSTs of ``body`` to ``url``'s predict route for ``protocol`` (one of
    :data:`PROTOCOLS`, see the module doc) from ``clients`` at once.

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
    endpoint, payload, headers = protocol_request(url, body, protocol, content_type, timeout)
    latencies, statuses, failures, seconds = _load(
        endpoint, payload, headers, min(clients, requests), requests, timeout, max_seconds)
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
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": dict(failures),
    }

