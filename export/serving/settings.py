"""One settings object for ``kcnn-serve``: :class:`ServerSettings`.

Every limit and address travels in this one frozen dataclass from ``kcnn.cli.serve`` to
:func:`~kcnn.export.serving.runner.serve`, :func:`~kcnn.export.serving.app.create_app` and the
gRPC server (:mod:`kcnn.export.serving.grpc_server`), as MLServer's ``Settings`` does, instead of
each limit being repeated through every signature. ``GET /v1/metadata`` reports the limits part
(:meth:`ServerSettings.limits_dict`).
"""
from __future__ import annotations

import dataclasses
import math

from kcnn.export.checks import check_positive
from kcnn.export.serving import requests as req
from kcnn.export.serving.batcher import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS
from kcnn.export.serving.protocol import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_HEADER_BYTES

#: Largest gRPC message (either direction) by default: the HTTP body limit.
DEFAULT_GRPC_MAX_MESSAGE_BYTES = req.DEFAULT_MAX_BODY_BYTES
#: Most gRPC calls in progress at once by default; more are refused with RESOURCE_EXHAUSTED.
DEFAULT_GRPC_MAX_CONCURRENCY = 1024
#: The limits ``GET /v1/metadata`` reports (the addresses and logging are not limits).
_LIMIT_FIELDS = ("max_batch", "max_wait_ms", "max_body_bytes", "max_instances",
                 "max_image_pixels", "max_request_pixels", "max_header_bytes",
                 "header_timeout_s", "read_timeout_s", "grpc_max_message_bytes",
                 "grpc_max_concurrency")


def _check_port(name: str, value, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"{name} must be an integer from 0 to 65535"
                         f"{' or None' if allow_none else ''}, received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Addresses, batching and per-request limits of one ``kcnn-serve`` instance.

    ``host``/``port``: the HTTP address (port 0: any free port). ``grpc_port``: the KServe V2
    gRPC port on the same host (None: no gRPC; 0: any free port). ``max_batch`` /
    ``max_wait_ms``: the micro-batcher. ``max_body_bytes``, ``max_instances``,
    ``max_image_pixels``, ``max_request_pixels``, ``read_timeout_s``: per HTTP request (413 /
    408); ``max_header_bytes``, ``header_timeout_s``: the request head (431 / 408).
    ``grpc_max_message_bytes``: largest gRPC message in or out; ``grpc_max_concurrency``: most
    gRPC calls in progress. ``model_name`` (None: the file's metadata name, else its stem) and
    ``model_version`` name the model on every protocol.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_body_bytes: int = req.DEFAULT_MAX_BODY_BYTES
    max_instances: int = req.DEFAULT_MAX_INSTANCES
    max_image_pixels: int = req.MAX_IMAGE_PIXELS
    max_request_pixels: int = req.DEFAULT_MAX_REQUEST_PIXELS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    read_timeout_s: float = req.DEFAULT_READ_TIMEOUT_S
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES
    grpc_max_concurrency: int = DEFAULT_GRPC_MAX_CONCURRENCY
    model_name: str | None = None
    model_version: str = "1"
    providers: tuple | None = None
    access_log: bool = False
    log_level: str = "warning"

    def __post_init__(self):
        _check_port("port", self.port, allow_none=False)
        _check_port("grpc_port", self.grpc_port, allow_none=True)
        for name in ("max_batch", "max_body_bytes", "max_instances", "max_image_pixels",
                     "max_request_pixels", "max_header_bytes", "grpc_max_message_bytes",
                     "grpc_max_concurrency"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("header_timeout_s", "read_timeout_s"):
            check_positive(name, getattr(self, name))
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(
                wait) or wait < 0:
            raise ValueError(f"max_wait_ms must be a finite number >= 0, received: "
                             f"max_wait_ms={wait!r}")
        if self.providers is not None:
            object.__setattr__(self, "providers", tuple(self.providers))

    def pixel_budget(self) -> req.PixelBudget:
        """A fresh decoded-pixel budget for one request."""
        return req.PixelBudget(self.max_image_pixels, self.max_request_pixels)

    def limits_dict(self) -> dict:
        """The limits as a JSON-ready dict (what ``GET /v1/metadata`` reports)."""
        return {name: getattr(self, name) for name in _LIMIT_FIELDS}

    def replace(self, **changes) -> "ServerSettings":
        """A copy with ``changes`` (field names; TypeError naming an unknown one)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown server setting(s) {', '.join(unknown)}; accepted: "
                            f"{', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)
