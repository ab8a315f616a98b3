"""KServe V2 / Open Inference Protocol over gRPC (what ``tritonclient.grpc`` speaks).

``inference.GRPCInferenceService`` (:mod:`kcnn.export.serving.grpc_v2`, the checked-in stubs):
``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata`` and
``ModelInfer``. Inference takes one input ``images``, datatype ``FP32``, shape ``[n, H, W, C]``
(preprocessed, as the model metadata says), its data either in ``raw_input_contents`` (row-major
little-endian bytes) or in ``contents.fp32_contents``; the answer carries ``logits`` in
``raw_output_contents``. The same validation and messages as the HTTP route
(:mod:`kcnn.export.serving.kserve_v2`), and the same inference entry (``ctx.infer``: the
micro-batcher, the health tracker, the non-finite check); every call is counted in the app's
Prometheus metrics (``kcnn_grpc_requests_total``).

The server is ``grpc.aio`` on uvicorn's event loop, not a thread pool server: the handlers
``await`` the micro-batcher's futures directly (no thread hop or lock per call, one batcher shared
with HTTP without cross-thread hand-offs), and readiness, shutdown and metrics are the same
objects HTTP uses. Handlers take the raw request bytes and parse them themselves, so that a
message that is not a valid protobuf is ``INVALID_ARGUMENT`` rather than gRPC's own ``INTERNAL``.

Calls share the micro-batcher but seldom a batch: grpc.aio accepts one call at a time (each
acceptance a round trip through grpcio's completion-queue poller thread) and hands it over with
its message complete, so calls reach :meth:`InferenceServicer.ModelInfer` on successive loop
steps and none is ever "on its way" for a batch to wait for (announcing calls when grpc.aio
accepts them was measured: the next call is accepted only after the previous one is submitted).

Status codes: a client mistake is ``INVALID_ARGUMENT`` (malformed request, wrong input name,
datatype, shape or data size), ``NOT_FOUND`` (unknown model or version) or
``RESOURCE_EXHAUSTED`` (more images than ``max_instances``; messages over
``grpc_max_message_bytes``, and calls beyond ``grpc_max_concurrency``, are refused by gRPC itself
with the same code); ``UNAVAILABLE`` while shutting down; ``INTERNAL`` only when onnxruntime fails.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time

import numpy as np

from kcnn.export.serving.batcher import BatcherStopped
from kcnn.export.serving.kserve_v2 import DATATYPE, check_shape, model_metadata, server_version
from kcnn.export.serving.requests import RequestError

SERVICE = "inference.GRPCInferenceService"
#: Typed (``fp32_contents``) inputs with more values than this are converted in a worker thread.
INLINE_CONTENTS_VALUES = 64 * 1024
_log = logging.getLogger("uvicorn.error")


def _status_code(status: int):
    import grpc

    return {404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
            503: grpc.StatusCode.UNAVAILABLE}.get(status, grpc.StatusCode.INVALID_ARGUMENT)


def _check_model(model, name: str, version: str) -> None:
    if name != model.name:
        raise RequestError(404, f"unknown model {name!r}; this server serves {model.name!r}")
    if version and version != model.version:
        raise RequestError(404, f"unknown version {version!r} of model {name!r}; served version: "
                                f"{model.version!r}")


def _input_array(tensor, raw: list, shape: list[int]) -> np.ndarray:
    """The float32 batch of one input from ``raw`` (its raw bytes, or empty) or its contents."""
    count = math.prod(shape)
    contents = tensor.contents if tensor.HasField("contents") else None
    if raw and contents is not None:
        raise RequestError(400, "input has both raw_input_contents and contents; send one")
    if raw:
        data = raw[0]
        if len(data) != 4 * count:
            raise RequestError(400, f"raw_input_contents holds {len(data)} bytes; shape {shape} "
                                    f"of FP32 needs {4 * count}")
        return np.frombuffer(data, dtype="<f4").reshape(shape)  # read-only, not copied
    values = contents.fp32_contents if contents is not None else ()
    others = [f.name for f, _ in contents.ListFields()
              if f.name != "fp32_contents"] if contents is not None else []
    if others:
        raise RequestError(400, f"input contents {others[0]!r} do not match datatype FP32; use "
                                "fp32_contents or raw_input_contents")
    if len(values) != count:
        raise RequestError(400, f"input holds {len(values)} fp32_contents values; shape {shape} "
                                f"needs {count} (or send raw_input_contents)")
    return np.array(values, dtype=np.float32).reshape(shape)


def parse_infer_request(request, model, max_instances: int) -> np.ndarray:
    """A ``ModelInferRequest`` -> float32 batch; :class:`RequestError` for client mistakes."""
    p = model.predictor
    if len(request.inputs) != 1:
        raise RequestError(400, f"'inputs' must hold exactly one tensor ({p.input_name!r}); "
                                f"received {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != p.input_name:
        raise RequestError(400, f"unknown input {tensor.name!r}; the model's input is "
                                f"{p.input_name!r}")
    if tensor.datatype != DATATYPE:
        raise RequestError(400, f"input datatype {tensor.datatype!r} is not accepted; the "
                                f"model's input {p.input_name!r} is {DATATYPE}")
    raw = list(request.raw_input_contents)
    if len(raw) > 1:
        raise RequestError(400, f"raw_input_contents holds {len(raw)} entries for 1 input")
    shape = check_shape(list(tensor.shape), tuple(int(d) for d in p.input_shape), max_instances)
    for out in request.outputs:
        if out.name != p.output_name:
            raise RequestError(400, f"unknown output {out.name!r}; the model's output is "
                                    f"{p.output_name!r}")
        if "class_count" in out.parameters:
            raise RequestError(400, "output parameter class_count is not supported")
    batch = _input_array(tensor, raw, shape)
    if not np.isfinite(batch).all():
        raise RequestError(400, "input contains NaN or infinite values")
    return batch


class InferenceServicer:
    """The six RPCs over one :class:`~kcnn.export.serving.app.ServingContext` (raw bytes in,
    serialized responses out; see the module doc)."""

    def __init__(self, ctx):
        from kcnn.export.serving.grpc_v2 import grpc_predict_v2_pb2 as pb

        self.ctx, self.pb = ctx, pb
        meta = model_metadata(ctx.model, ctx.model.version)
        tensors = pb.ModelMetadataResponse.TensorMetadata
        self.metadata = pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensors(**t) for t in meta["inputs"]],
            outputs=[tensors(**t) for t in meta["outputs"]])

    def _parse(self, message_type, data: bytes):
        from google.protobuf.message import DecodeError

        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError) as exc:
            raise RequestError(400, f"the request is not a valid {message_type.__name__} "
                                    f"message: {exc}") from None

    async def ServerLive(self, data, context):
        """Live while the process answers."""
        self._parse(self.pb.ServerLiveRequest, data)
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, data, context):
        """Ready unless shutting down or inference keeps failing (as ``GET /v1/health``)."""
        self._parse(self.pb.ServerReadyRequest, data)
        return self.pb.ServerReadyResponse(ready=self.ctx.problem() is None)

    async def ModelReady(self, data, context):
        """The served model's readiness; NOT_FOUND for another name or version."""
        request = self._parse(self.pb.ModelReadyRequest, data)
        _check_model(self.ctx.model, request.name, request.version)
        return self.pb.ModelReadyResponse(ready=self.ctx.problem() is None)

    async def ServerMetadata(self, data, context):
        """Server name, version and protocol extensions."""
        self._parse(self.pb.ServerMetadataRequest, data)
        return self.pb.ServerMetadataResponse(name="kcnn", version=server_version())

    async def ModelMetadata(self, data, context):
        """Inputs and outputs of the served model (as ``GET /v2/models/NAME``)."""
        request = self._parse(self.pb.ModelMetadataRequest, data)
        _check_model(self.ctx.model, request.name, request.version)
        return self.metadata

    async def ModelInfer(self, data, context):
        """One inference through the shared micro-batcher."""
        ctx, pb = self.ctx, self.pb
        with ctx.batcher.expecting():
            request = self._parse(pb.ModelInferRequest, data)
            _check_model(ctx.model, request.model_name, request.model_version)
            limit = ctx.settings.max_instances
            values = sum(len(t.contents.fp32_contents) for t in request.inputs)
            if values > INLINE_CONTENTS_VALUES:
                batch = await asyncio.to_thread(parse_infer_request, request, ctx.model, limit)
            else:
                batch = parse_infer_request(request, ctx.model, limit)
        logits = np.ascontiguousarray(await ctx.infer(batch), dtype="<f4")
        output = pb.ModelInferResponse.InferOutputTensor(
            name=ctx.model.predictor.output_name, datatype=DATATYPE, shape=list(logits.shape))
        return pb.ModelInferResponse(model_name=ctx.model.name, model_version=ctx.model.version,
                                     id=request.id, outputs=[output],
                                     raw_output_contents=[logits.tobytes()])


def _handler(ctx, name: str, method):
    """``method`` wrapped: errors to status codes, every call counted in the metrics."""
    import grpc

    from kcnn.export.serving.app import InferenceFailed

    async def call(data, context):
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            return (await method(data, context)).SerializeToString()
        except asyncio.CancelledError:  # the client went away, or the shutdown grace ran out
            code = grpc.StatusCode.CANCELLED
            raise
        except RequestError as exc:
            code, details = _status_code(exc.status), exc.message
        except BatcherStopped as exc:
            code, details = grpc.StatusCode.UNAVAILABLE, str(exc)
        except InferenceFailed as exc:
            cause = exc.__cause__
            _log.error("inference failed on gRPC %s", name,
                       exc_info=(type(cause), cause, cause.__traceback__))
            code, details = grpc.StatusCode.INTERNAL, f"inference failed: {type(cause).__name__}"
        except Exception as exc:  # noqa: BLE001 - a bug of ours: logged, INTERNAL
            _log.exception("unexpected error in gRPC %s", name)
            code, details = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
        finally:
            ctx.metrics.observe_grpc(name, code.name, time.perf_counter() - start)
        context.set_code(code)
        context.set_details(details)
        return b""

    return grpc.unary_unary_rpc_method_handler(call)


def grpc_server(ctx, settings):
    """A ``grpc.aio`` server (not yet bound or started) for ``ctx``, limited by ``settings``.

    Call it on the running event loop; then ``port = server.add_insecure_port(address)`` and
    ``await server.start()``.
    """
    import grpc

    servicer = InferenceServicer(ctx)
    names = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
             "ModelInfer")
    handlers = {name: _handler(ctx, name, getattr(servicer, name)) for name in names}
    size = settings.grpc_max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", size),
                 ("grpc.max_send_message_length", size),
                 ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=settings.grpc_max_concurrency)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return server
