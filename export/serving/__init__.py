"""kcnn.export.serving: HTTP and gRPC serving of an ONNX image classifier (``kcnn-serve``).

One module per job:

* :mod:`~kcnn.export.serving.batcher` — :class:`MicroBatcher`, concurrent requests merged into
  few onnxruntime calls in a worker thread.
* :mod:`~kcnn.export.serving.requests` — request parsing: body limit, ``top_k``, JSON instances,
  multipart uploads, image bodies; :class:`RequestError` for client mistakes.
* :mod:`~kcnn.export.serving.model` — :class:`ServedModel`, the predictor as routes use it.
* :mod:`~kcnn.export.serving.app` — :func:`create_app`, the Starlette app built from route groups
  (add one: ``create_app(p, route_groups=[*DEFAULT_ROUTE_GROUPS, my_group])``).
* :mod:`~kcnn.export.serving.settings` — :class:`ServerSettings`, every limit and address in one
  object, from the CLI to the runner, the HTTP app and the gRPC server.
* :mod:`~kcnn.export.serving.grpc_server` — KServe V2 over gRPC on the same event loop.
* :mod:`~kcnn.export.serving.runner` — :func:`serve`: socket, uvicorn, gRPC, signals.

The server needs nothing but the ONNX file: labels and preprocessing come from its metadata
through :class:`kcnn.export.OnnxPredictor`.
"""
from kcnn.export.serving.app import (DEFAULT_ROUTE_GROUPS, Limits, ServingContext, create_app,
                                     error_response, info_routes, predict_routes)
from kcnn.export.serving.batcher import BatcherStats, BatcherStopped, MicroBatcher
from kcnn.export.serving.model import ServedModel
from kcnn.export.serving.requests import RequestError
from kcnn.export.serving.runner import serve
from kcnn.export.serving.settings import ServerSettings

__all__ = ["DEFAULT_ROUTE_GROUPS", "BatcherStats", "BatcherStopped", "Limits", "MicroBatcher",
           "RequestError", "ServedModel", "ServerSettings", "ServingContext", "create_app",
           "error_response", "info_routes", "predict_routes", "serve"]
