"""A small, bounded HTTP load generator for ``kcnn-serve``.

``run_load(url, body)`` keeps ``clients`` requests in flight against ``URL/v1/predict`` until
``requests`` have completed (or ``max_seconds`` have passed) and reports throughput and latency::

    from kcnn.export.loadtest import run_load
    run_load("http://127.0.0.1:8000", open("digit.png", "rb").read(), clients=32, requests=2000)
    # {'requests': 2000, 'errors': 0, 'requests_per_s': ..., 'images_per_s': ..., 'p50_ms': ..., ...}

Also a command: ``python -m kcnn.export.loadtest URL FILE [--clients N] [--requests N]``.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time

import numpy as np


def _check_positive(name: str, value, kind=int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
            or not value > 0:
        accepted = "a number > 0" if kind is float else "an integer >= 1"
        raise ValueError(f"{name} must be {accepted}, received: {name}={value!r}")


async def _load(endpoint, body, headers, clients, requests, timeout, max_seconds):
    import httpx

    latencies, statuses, failures = [], collections.Counter(), collections.Counter()
    issued = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    deadline = start + max_seconds

    async def client(session):
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                response = await session.post(endpoint, content=body, headers=headers)
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
                continue
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return latencies, statuses, failures, time.perf_counter() - start


def run_load(url: str, body: bytes, *, clients: int = 32, requests: int = 512,
             images_per_request: int = 1, content_type: str = "application/octet-stream",
             timeout: float = 30.0, max_seconds: float = 120.0) -> dict:
    """Send ``requests`` POSTs of ``body`` to ``url`` + ``/v1/predict`` from ``clients`` at once.

    ``body`` is an image file's bytes (or a JSON payload with ``content_type="application/json"``
    holding ``images_per_request`` instances). Stops early after ``max_seconds``. Returns a dict:
    ``requests`` (completed), ``errors`` (non-200 answers + transport failures), ``seconds``,
    ``requests_per_s``, ``images_per_s`` (successful images per second), ``p50_ms``, ``p90_ms``,
    ``p99_ms``, ``max_ms`` (latency of successful requests), ``statuses`` and ``failures``.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must be an http(s) URL of a kcnn-serve server, received: {url!r}")
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"body must be bytes, received: {type(body).__name__}")
    _check_positive("clients", clients)
    _check_positive("requests", requests)
    _check_positive("images_per_request", images_per_request)
    _check_positive("timeout", timeout, float)
    _check_positive("max_seconds", max_seconds, float)
    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/predict"):
        endpoint += "/v1/predict"
    latencies, statuses, failures, seconds = asyncio.run(_load(
        endpoint, bytes(body), {"content-type": content_type}, min(clients, requests), requests,
        timeout, max_seconds))
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
        "requests_per_s": ok / seconds if seconds > 0 else 0.0,
        "images_per_s": ok * images_per_request / seconds if seconds > 0 else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": float(ms.max()) if ok else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "failures": dict(failures),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kcnn.export.loadtest",
                                     description="Load-test a kcnn-serve server with one image.")
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("file", help="image file (PNG/JPEG) to send as the request body")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        with open(args.file, "rb") as handle:
            body = handle.read()
        result = run_load(args.url, body, clients=args.clients, requests=args.requests,
                          max_seconds=args.max_seconds)
    except (OSError, ValueError, TypeError) as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
