"""Prometheus metrics of one app: ``GET /metrics`` in the text exposition format.

Built on ``prometheus_client`` with a per-app :class:`~prometheus_client.CollectorRegistry`
(never the global one, so several apps in one process keep separate counts):

* ``kcnn_http_requests_total{route, method, status}`` — requests by route template
  (``/v2/models/{name}/infer``, not the concrete path; ``unmatched`` for unknown paths);
* ``kcnn_http_request_duration_seconds{route}`` — latency histogram, first byte in to last out;
* ``kcnn_http_errors_total{route, status}`` — responses with status >= 400;
* ``kcnn_grpc_requests_total{method, code}`` and ``kcnn_grpc_request_duration_seconds{method}``
  — KServe V2 gRPC calls (:mod:`kcnn.export.serving.grpc_server`);
* ``kcnn_batch_images`` — images per onnxruntime call (histogram), ``kcnn_inference_calls_total``,
  ``kcnn_inference_images_total``, ``kcnn_inference_errors_total`` and the gauge
  ``kcnn_queue_depth`` (images queued or being read for the micro-batcher), read from the
  micro-batcher's own counters when scraped.
"""
from __future__ import annotations

import time

#: Upper bounds of the images-per-call histogram (a power-of-two ladder up to a large batch).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class BatcherCollector:
    """A ``prometheus_client`` collector reading a :class:`MicroBatcher`'s counters on scrape."""

    def __init__(self, batcher):
        self.batcher = batcher

    def collect(self):
        """Yield the batcher's metric families."""
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)

        stats = self.batcher.stats
        sizes = dict(stats.batch_sizes)
        buckets, cumulative = [], 0
        for bound in BATCH_BUCKETS:
            cumulative += sum(n for size, n in sizes.items() if (bound // 2) < size <= bound)
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(sizes.values())))
        yield HistogramMetricFamily(
            "kcnn_batch_images", "Images per onnxruntime call.", buckets=buckets,
            sum_value=float(sum(size * n for size, n in sizes.items())))
        for name, doc, value in (
                ("kcnn_inference_calls", "onnxruntime calls.", stats.calls),
                ("kcnn_inference_images", "Images run through onnxruntime.", stats.images),
                ("kcnn_inference_errors", "Failed onnxruntime calls.", stats.errors)):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("kcnn_queue_depth",
                                "Requests queued for or being read for the micro-batcher.",
                                value=self.batcher.queue_depth)


class Metrics:
    """The metrics of one app: a registry, the HTTP metrics and the batcher collector."""

    def __init__(self, batcher):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("kcnn_http_requests", "HTTP requests by route template and "
                                "status.", ["route", "method", "status"], registry=self.registry)
        self.errors = Counter("kcnn_http_errors", "HTTP responses with status >= 400.",
                              ["route", "status"], registry=self.registry)
        self.latency = Histogram("kcnn_http_request_duration_seconds", "HTTP request latency.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.grpc_requests = Counter("kcnn_grpc_requests", "gRPC calls by method and status "
                                     "code.", ["method", "code"], registry=self.registry)
        self.grpc_latency = Histogram("kcnn_grpc_request_duration_seconds", "gRPC call latency.",
                                      ["method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(BatcherCollector(batcher))
        # The labelled children per label values: ``labels()`` takes a lock and builds a key on
        # every call. Label values are route templates, methods and statuses: a bounded set.
        self._http_children: dict = {}
        self._grpc_children: dict = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.requests.labels(route, method, str(status)), self.latency.labels(route),
                self.errors.labels(route, str(status)) if status >= 400 else None)
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        """Count one finished gRPC call (``code``: the status code's name, e.g. ``OK``)."""
        key = (method, code)
        children = self._grpc_children.get(key)
        if children is None:
            children = self._grpc_children[key] = (self.grpc_requests.labels(method, code),
                                                   self.grpc_latency.labels(method))
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def route_template(app, scope) -> str:
    """The path template of the route that ``scope`` matches (``unmatched`` when none does)."""
    from starlette.routing import Match

    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request into :class:`Metrics`."""

    #: Most (method, path) -> route template entries remembered (paths carry client-chosen names).
    CACHE_SIZE = 1024

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._templates: dict = {}

    def _template(self, scope) -> str:
        key = (scope["method"], scope["path"])
        template = self._templates.get(key)
        if template is None:
            template = route_template(scope["app"], scope) if "app" in scope else "unmatched"
            if len(self._templates) < self.CACHE_SIZE:
                self._templates[key] = template
        return template

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(self._template(scope), scope["method"], status,
                                 time.perf_counter() - start)


def metrics_routes(ctx) -> list:
    """``GET /metrics``: the app's :class:`Metrics` (``ctx.metrics``; ``create_app`` adds the
    :class:`MetricsMiddleware` that fills them)."""
    from starlette.responses import Response
    from starlette.routing import Route
    from prometheus_client import CONTENT_TYPE_LATEST

    metrics = ctx.metrics

    async def scrape(request):
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", scrape, methods=["GET"])]
