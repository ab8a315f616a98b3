"""Running the server: socket binding, uvicorn settings, signals (:func:`serve`).

The socket is bound before uvicorn starts (port 0 picks a free port, and the URL printed is the
real one); SIGINT/SIGTERM finish the requests in flight, stop the micro-batcher and return.
"""
from __future__ import annotations

import signal
import socket
import sys

from kcnn.export.serving.app import create_app
from kcnn.export.serving.batcher import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS
from kcnn.export.serving.protocol import (DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_HEADER_BYTES,
                                          protocol_class)
from kcnn.export.serving.requests import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES,
                                          DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_READ_TIMEOUT_S,
                                          MAX_IMAGE_PIXELS)

#: Seconds uvicorn waits for requests in flight after SIGINT/SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ModelStartupError(RuntimeError):
    """The model loads but onnxruntime cannot run it: the server refuses to start."""


def check_model_runs(predictor) -> None:
    """Run batches of 1 and 2 blank images through ``predictor``; ModelStartupError if that fails.

    A file that loads but fails inside onnxruntime (a bad shape in the graph, an op the provider
    cannot run) would otherwise answer every request with a 500 while health said ok.
    """
    import numpy as np

    for n in (1, 2):
        try:
            logits = np.asarray(predictor.run(np.zeros((n, *predictor.input_shape), np.float32)))
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelStartupError(
                f"{predictor.path}: the model fails in onnxruntime on a batch of {n} "
                f"blank images: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from None
        if logits.shape[0] != n:
            raise ModelStartupError(f"{predictor.path}: the model returns {logits.shape[0]} rows "
                                    f"for a batch of {n} images")


def serve(path, host: str = "127.0.0.1", port: int = 8000, *, max_batch: int = DEFAULT_MAX_BATCH,
          max_wait_ms: float = DEFAULT_MAX_WAIT_MS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          max_instances: int = DEFAULT_MAX_INSTANCES, max_image_pixels: int = MAX_IMAGE_PIXELS,
          max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS,
          max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
          header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
          read_timeout_s: float = DEFAULT_READ_TIMEOUT_S, providers=None,
          access_log: bool = False, log_level: str = "warning", model_name: str | None = None,
          model_version: str = "1") -> None:
    """Serve the ONNX classifier at ``path`` over HTTP until SIGINT/SIGTERM.

    Runs the model once on blank images first (:func:`check_model_runs`). Binds ``host``
    (loopback by default) and ``port`` (0: any free port), then prints one line
    ``serving PATH on http://HOST:PORT`` to stdout once requests are accepted. ``model_name``
    (default: the file's metadata name, else its stem) and ``model_version`` name the model on
    every protocol's routes. The request limits are described in :mod:`kcnn.export.serving.app`
    (body, images, read timeout) and :mod:`kcnn.export.serving.protocol` (request head). A SIGTERM or SIGINT
    finishes the requests in flight, stops the micro-batcher and returns normally.
    """
    import uvicorn

    from kcnn.export.predictor import OnnxPredictor

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, received: port={port!r}")
    predictor = OnnxPredictor(path, providers=providers)
    check_model_runs(predictor)
    app = create_app(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     max_body_bytes=max_body_bytes, max_instances=max_instances,
                     max_image_pixels=max_image_pixels, max_request_pixels=max_request_pixels,
                     read_timeout_s=read_timeout_s, model_name=model_name,
                     model_version=model_version)
    sock = _bind(host, port)
    url = _url(sock)
    if not _is_loopback(sock.getsockname()[0]):
        print(f"kcnn-serve: warning: listening on {url}, reachable from other machines; the server "
              "has no authentication or TLS", file=sys.stderr, flush=True)

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(f"serving {path} on {url}", flush=True)

    http = protocol_class(max_header_bytes=max_header_bytes, header_timeout_s=header_timeout_s)
    config = uvicorn.Config(app, http=http, log_level=log_level, access_log=access_log,
                            lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = _Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down, which would kill the process
    # with that signal; a graceful stop on request is a normal exit, so handle it with a no-op.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise RuntimeError(f"the server for {path} on {url} failed to start")
