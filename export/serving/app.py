"""The Starlette app of ``kcnn-serve``: :func:`create_app` and its route groups.

Endpoints
    ``POST /v1/predict``  an image file body (PNG, JPEG, ... any content type but JSON), a
                          multipart form with file part(s) (``curl -F file=@x.png``), or JSON
                          ``{"instances": [array, ...], "top_k": K}``; ``top_k`` may also be a
                          query parameter (or a form field). Answers ``{"predictions": [{"label",
                          "index", "score", "top_k": [{"label", "index", "score"}, ...]}, ...]}``,
                          one per image.
    ``GET /v1/health``    ``{"status": "ok"}``; 503 ``{"status": "unavailable", "error"}`` while
                          shutting down or while inference keeps failing
                          (:mod:`kcnn.export.serving.health`).
    ``GET /v1/metadata``  labels, preprocessing, input/output names and shapes, provider, model
                          name, limits.
    ``GET /v1/stats``     request, image and onnxruntime-call counters of the micro-batcher.
    ``GET /``, ``POST /v1/explain``, ``GET /v1/explain/info``  the "see inside" page and its data
                          (:mod:`kcnn.export.serving.explain`).
    ``/v2/...``           KServe V2 / Open Inference Protocol (:mod:`kcnn.export.serving.kserve_v2`).
    ``/v1/models/...``    TF Serving REST predict and status (:mod:`kcnn.export.serving.tfserving`).
    ``GET /metrics``      Prometheus metrics (:mod:`kcnn.export.serving.metrics`); the timer
                          middleware is added here, around every route group.

KServe V2 over gRPC (:mod:`kcnn.export.serving.grpc_server`) is a separate server on the same
event loop, built by the runner from the same :class:`ServingContext` (``app.state.serving``).
The app's settings are one :class:`~kcnn.export.serving.settings.ServerSettings` (``ctx.settings``).

Adding routes: a *route group* is a function ``group(ctx: ServingContext) -> list[BaseRoute]``
(Starlette ``Route`` / ``Mount`` objects). :data:`DEFAULT_ROUTE_GROUPS` lists the built-in ones;
pass ``create_app(..., route_groups=[*DEFAULT_ROUTE_GROUPS, my_group])`` or append a group to
that tuple in this module. Handlers read images exactly as ``/v1/predict`` does with
``await ctx.read_inputs(request)`` and run the model with ``await ctx.infer(batch)``;
raising :class:`RequestError` answers ``{"error": ...}`` with its 4xx status.

Client errors are 4xx JSON ``{"error": ...}``; bodies over ``max_body_bytes``, more than
``max_instances`` images, an image over ``max_image_pixels`` and images over
``max_request_pixels`` together get 413; a body that stalls for ``read_timeout_s``, 408 (the
request head's limits are the connection's: :mod:`kcnn.export.serving.protocol`).
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from kcnn.export.serving import requests as req
from kcnn.export.serving.batcher import BatcherStopped, MicroBatcher
from kcnn.export.serving.explain import explain_routes
from kcnn.export.serving.health import InferenceHealth
from kcnn.export.serving.kserve_v2 import kserve_v2_routes
from kcnn.export.serving.metrics import Metrics, MetricsMiddleware, metrics_routes
from kcnn.export.serving.model import ServedModel
from kcnn.export.serving.requests import INLINE_DECODE_BYTES, INLINE_DECODE_PIXELS, RequestError
from kcnn.export.serving.settings import ServerSettings
from kcnn.export.serving.tfserving import tfserving_routes


#: The former name of :class:`~kcnn.export.serving.settings.ServerSettings` (kept as an alias).
Limits = ServerSettings


class InferenceFailed(Exception):
    """onnxruntime raised while running a batch: answered 500, logged with its traceback, and the
    connection stays open (an exception escaping the app would make uvicorn drop it)."""


@dataclasses.dataclass
class ServingContext:
    """What every route group (and the gRPC server) gets: the model, its micro-batcher, the
    settings, the metrics and the health tracker."""

    model: ServedModel
    batcher: MicroBatcher
    settings: ServerSettings
    #: Starlette ``Middleware`` entries route groups may add (run inside the metrics timer).
    middleware: list = dataclasses.field(default_factory=list)
    #: The app's :class:`~kcnn.export.serving.metrics.Metrics` (``GET /metrics``).
    metrics: Metrics = None
    #: Inference failures in a row (health checks answer 503 while they persist).
    health: InferenceHealth = dataclasses.field(default_factory=InferenceHealth)

    @property
    def limits(self) -> ServerSettings:
        """The settings (their former name, kept for route groups that read ``ctx.limits``)."""
        return self.settings

    def problem(self) -> str | None:
        """Why the server cannot serve now (shutting down, inference failing), or None."""
        if not self.batcher.running:
            return "the server is shutting down"
        return self.health.problem()

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run ``batch`` through the micro-batcher; non-finite scores are the request's fault.

        Finite but huge inputs (say 1e30) overflow the logits to inf/NaN, which no JSON answer may
        carry: they are a 422 for that request, never a 500 from the encoder.
        """
        try:
            logits = await self.batcher.submit(batch)
        except BatcherStopped:
            raise
        except Exception as err:  # onnxruntime's own exception types: the server's fault (500)
            self.health.failed(err)
            raise InferenceFailed(err) from err
        self.health.succeeded()
        if not np.isfinite(logits).all():
            raise RequestError(422, "the input gives non-finite scores (NaN or infinity): its "
                                    "values are far outside the model's input range (see "
                                    "GET /v1/metadata, preprocessing)")
        return logits

    def _prepare(self, body: bytes, content_type: str, files: list[bytes] | None):
        """Body (or multipart file parts) -> (float32 batch, raw body top_k or None)."""
        if req.is_json(content_type, body) and files is None:
            images, top_k = req.parse_json_body(body, self.limits.max_instances)
            return np.concatenate([self.model.preprocess(image) for image in images]), top_k
        budget = self.limits.pixel_budget()
        parts = files if files is not None else [body]
        # One image decoded at a time: only its preprocessed (model-sized) copy is kept.
        return np.concatenate([self.model.preprocess(budget.decode(part)) for part in parts]), None

    async def read_body(self, request) -> bytes:
        """The request body within the app's size limit and read timeout (413, 408, 400)."""
        return await req.read_body(request, self.limits.max_body_bytes, self.limits.read_timeout_s)

    async def _read_batch(self, request):
        from starlette.concurrency import run_in_threadpool

        body = await self.read_body(request)
        content_type = request.headers.get("content-type", "")
        files, form_top_k = None, None
        if not req.is_json(content_type, body) and req.is_multipart(content_type):
            files, form_top_k = await req.parse_multipart_body(
                body, content_type, max_files=self.limits.max_instances)
        small = files is None and len(body) <= INLINE_DECODE_BYTES
        if small and req.is_json(content_type, body):
            batch, body_top_k = self._prepare(body, content_type, files)
        elif small and (batch := self._small_image(body)) is not None:
            body_top_k = None
        else:
            batch, body_top_k = await run_in_threadpool(self._prepare, body, content_type, files)
        return batch, (form_top_k if files is not None else body_top_k)

    def _small_image(self, body: bytes):
        """The preprocessed batch of one image body of at most :data:`INLINE_DECODE_PIXELS`,
        decoded on the event loop, or None for a larger one (for a worker thread). An image's
        cost is set by its declared size, not its byte count (a 2 KB PNG can declare 16 Mpx):
        the size is read from the header before anything is decoded."""
        return req.parse_inline(lambda budget: self.model.preprocess(budget.decode(body)),
                                self.limits.pixel_budget())

    async def read_inputs(self, request) -> tuple[np.ndarray, int]:
        """A predict-style request -> (float32 batch for the model, top_k).

        Accepts everything ``POST /v1/predict`` accepts (image body, multipart, JSON) and the
        ``top_k`` query parameter or body field (default 1); raises :class:`RequestError`.
        """
        num_classes = self.model.num_classes
        query_top_k = request.query_params.get("top_k")
        if query_top_k is not None:
            top_k = req.parse_top_k(query_top_k, num_classes, "query parameter")
        with self.batcher.expecting():
            batch, body_top_k = await self._read_batch(request)
        if query_top_k is not None and body_top_k is not None:
            raise RequestError(400, "top_k given both as query parameter and in the body; use one")
        if body_top_k is not None:
            top_k = req.parse_top_k(body_top_k, num_classes, "body field")
        elif query_top_k is None:
            top_k = 1
        return batch, top_k


def predict_routes(ctx: ServingContext) -> list:
    """``POST /v1/predict``."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request):
        batch, top_k = await ctx.read_inputs(request)
        logits = await ctx.infer(batch)
        return JSONResponse({"predictions": ctx.model.postprocess(logits, top_k)})

    return [Route("/v1/predict", predict, methods=["POST"])]


def info_routes(ctx: ServingContext) -> list:
    """``GET /v1/health``, ``GET /v1/metadata`` and ``GET /v1/stats``."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    static_metadata = {**ctx.model.metadata(), "limits": ctx.settings.limits_dict()}

    async def health(request):
        problem = ctx.problem()
        if problem is not None:
            return JSONResponse({"status": "unavailable", "error": problem}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metadata(request):
        return JSONResponse(static_metadata)

    async def stats(request):
        return JSONResponse(ctx.batcher.stats.as_dict())

    return [Route("/v1/health", health, methods=["GET"]),
            Route("/v1/metadata", metadata, methods=["GET"]),
            Route("/v1/stats", stats, methods=["GET"])]


#: The route groups of a default app, in routing order.
DEFAULT_ROUTE_GROUPS = (predict_routes, info_routes, explain_routes, kserve_v2_routes,
                        tfserving_routes, metrics_routes)


def error_response(status: int, message: str, headers=None):
    """The JSON error every route answers: ``{"error": message}`` with ``status``."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def exception_handlers() -> dict:
    """Exception type -> handler: client errors as 4xx JSON, shutdown as 503, the rest as 500."""
    from starlette.exceptions import HTTPException

    async def on_request_error(request, exc: RequestError):
        return error_response(exc.status, exc.message)

    async def on_http_error(request, exc: HTTPException):
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    async def on_stopped(request, exc: BatcherStopped):
        return error_response(503, str(exc))

    async def on_inference_failed(request, exc: InferenceFailed):
        import logging

        cause = exc.__cause__
        logging.getLogger("uvicorn.error").error("inference failed on %s", request.url.path,
                                                 exc_info=(type(cause), cause, cause.__traceback__))
        return error_response(500, f"inference failed: {type(cause).__name__}")

    async def on_unexpected(request, exc: Exception):
        return error_response(500, f"internal error: {type(exc).__name__}")

    return {RequestError: on_request_error, HTTPException: on_http_error,
            BatcherStopped: on_stopped, InferenceFailed: on_inference_failed,
            Exception: on_unexpected}


def create_app(predictor, settings: ServerSettings | None = None, *,
               route_groups=DEFAULT_ROUTE_GROUPS, **overrides):
    """A Starlette app serving ``predictor`` (an :class:`~kcnn.export.OnnxPredictor`).

    ``settings`` (default :class:`ServerSettings()`) carries the limits, the batching and the
    model's name and version; ``overrides`` replace some of its fields
    (``create_app(p, model_name="b")``). ``route_groups`` are functions
    ``ServingContext -> list of routes`` (see the module doc); the Prometheus timer wraps every
    route. The micro-batcher starts and stops with the app's lifespan; ``app.state.serving`` is
    the :class:`ServingContext` (``app.state.model`` and ``app.state.batcher`` its parts).
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    settings = (settings or ServerSettings()).replace(**overrides)
    model = ServedModel(predictor, settings.model_name, settings.model_version)
    batcher = MicroBatcher(model.run, max_batch=settings.max_batch,
                           max_wait_ms=settings.max_wait_ms)
    ctx = ServingContext(model=model, batcher=batcher, settings=settings,
                         metrics=Metrics(batcher))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with batcher:
            yield

    routes = [route for group in route_groups for route in group(ctx)]
    middleware = [Middleware(MetricsMiddleware, metrics=ctx.metrics), *ctx.middleware]
    app = Starlette(routes=routes, exception_handlers=exception_handlers(), lifespan=lifespan,
                    middleware=middleware)
    app.state.serving = ctx
    app.state.batcher = batcher
    app.state.model = model
    return app
