"""Running the server: socket binding, uvicorn settings, signals (:func:`serve`).

The socket is bound before uvicorn starts (port 0 picks a free port, and the URL printed is the
real one); the optional gRPC server shares uvicorn's event loop; SIGINT/SIGTERM finish the gRPC
calls and HTTP requests in flight, stop the micro-batcher and return.
"""
from __future__ import annotations

import signal
import socket
import sys

from kcnn.export.serving.app import create_app
from kcnn.export.serving.protocol import protocol_class
from kcnn.export.serving.settings import ServerSettings

#: Seconds uvicorn waits for requests in flight after SIGINT/SIGTERM.
GRACEFUL_SHUTDOWN_S = 10
#: onnxruntime session config of the served model: its intra-op threads sleep between calls
#: instead of spinning. Requests come in bursts with gaps, and a spinning thread burns a core
#: through every gap: LeNet under 32 clients spent 0.3-0.5 ms of server CPU per image spinning,
#: more than the rest of a V2 binary request. The threads (one per core) stay for large models.
SESSION_CONFIG = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


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


class GrpcBindError(OSError):
    """The gRPC port cannot be bound (taken, not local, not allowed)."""


def _grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve(path, settings: ServerSettings | None = None, **overrides) -> None:
    """Serve the ONNX classifier at ``path`` until SIGINT/SIGTERM, as ``settings`` say.

    ``settings`` (default :class:`ServerSettings()`; ``overrides`` replace some of its fields,
    e.g. ``serve(path, port=0)``) carries the addresses, the limits and the model's name and
    version. Runs the model once on blank images first (:func:`check_model_runs`). Binds
    ``host`` (loopback by default) and ``port`` (0: any free port), then prints one line
    ``serving PATH on http://HOST:PORT`` to stdout once requests are accepted; with
    ``grpc_port`` set, the KServe V2 gRPC server (:mod:`kcnn.export.serving.grpc_server`) runs
    on the same event loop and a second line ``grpc on HOST:PORT`` follows. A SIGTERM or SIGINT
    lets gRPC calls and HTTP requests in flight finish (gRPC first), stops the micro-batcher
    and returns normally.
    """
    import uvicorn

    from kcnn.export.predictor import OnnxPredictor

    settings = (settings or ServerSettings()).replace(**overrides)
    host = settings.host
    providers = list(settings.providers) if settings.providers is not None else None
    predictor = OnnxPredictor(path, providers=providers, session_config=SESSION_CONFIG)
    check_model_runs(predictor)
    app = create_app(predictor, settings)
    sock = _bind(host, settings.port)
    url = _url(sock)
    if not _is_loopback(sock.getsockname()[0]):
        print(f"kcnn-serve: warning: listening on {url}, reachable from other machines; the server "
              "has no authentication or TLS", file=sys.stderr, flush=True)

    class _Server(uvicorn.Server):
        grpc = None
        grpc_error = None

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if not self.started:
                return
            grpc_line = ""
            if settings.grpc_port is not None:
                from kcnn.export.serving.grpc_server import grpc_server

                self.grpc = grpc_server(app.state.serving, settings)
                try:
                    port = self.grpc.add_insecure_port(_grpc_address(host, settings.grpc_port))
                except RuntimeError as exc:
                    self.grpc_error, self.grpc, self.should_exit = str(exc), None, True
                    return
                await self.grpc.start()
                grpc_line = f"\ngrpc on {_grpc_address(host, port)}"
            print(f"serving {path} on {url}{grpc_line}", flush=True)

        async def shutdown(self, sockets=None):
            if self.grpc is not None:  # refuse new calls, finish those in flight
                await self.grpc.stop(GRACEFUL_SHUTDOWN_S)
            await super().shutdown(sockets=sockets)

    http = protocol_class(max_header_bytes=settings.max_header_bytes,
                          header_timeout_s=settings.header_timeout_s)
    config = uvicorn.Config(app, http=http, log_level=settings.log_level,
                            access_log=settings.access_log, lifespan="on",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
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
    if server.grpc_error is not None:
        raise GrpcBindError(f"cannot serve gRPC on {_grpc_address(host, settings.grpc_port)}: "
                            f"{server.grpc_error}")
    if not server.started:
        raise RuntimeError(f"the server for {path} on {url} failed to start")
