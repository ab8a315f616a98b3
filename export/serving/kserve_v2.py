"""KServe V2 / Open Inference Protocol over HTTP/REST (what ``tritonclient.http`` speaks).

Routes (``NAME`` and ``V`` are the served model's ``--model-name`` / ``--model-version``):

    GET  /v2/health/live, /v2/health/ready        200 (empty body) when live / ready, else 503
    GET  /v2                                      server metadata {"name", "version", "extensions"}
    GET  /v2/models/NAME[/versions/V]             model metadata: inputs ``images`` FP32
                                                  ``[-1, H, W, C]``, outputs ``logits`` FP32
                                                  ``[-1, classes]``
    GET  /v2/models/NAME[/versions/V]/ready       200 when the model is ready, else 503
    POST /v2/models/NAME[/versions/V]/infer       inference: JSON tensors or the binary tensor data
                                                  extension (``Inference-Header-Content-Length``)

Inference follows the spec (https://kserve.github.io/website/docs/concepts/architecture/
data-plane/v2-protocol and Triton's binary data extension): one input ``images`` of datatype
``FP32`` and shape ``[n, H, W, C]`` (already preprocessed, as the model metadata says), its data as
a JSON list (flat or nested, row-major) or, with ``parameters.binary_data_size``, as raw
little-endian bytes after the JSON header. ``outputs`` selects outputs (only ``logits`` exists);
each output is JSON ``data`` unless ``parameters.binary_data`` (or the request's
``parameters.binary_data_output``) asks for binary, in which case the response is the JSON header
followed by the raw bytes, with its length in ``Inference-Header-Content-Length``. Images go
through the app's micro-batcher like ``/v1/predict``. Errors are ``{"error": "..."}`` with 400
(malformed request, wrong shape/datatype/input name), 404 (unknown model or version) or 413 (over
the body or instance limits). Classification (``class_count``), shared memory and compressed
requests are not supported (400/415); gRPC is :mod:`kcnn.export.serving.grpc_server`.
"""
from __future__ import annotations

import math

import numpy as np

from kcnn.export.serving.requests import RequestError
from kcnn.export.serving.v2_json import parse_header

#: The one datatype the model takes and gives.
DATATYPE = "FP32"
#: The protocol extensions this server implements (reported by ``GET /v2``).
EXTENSIONS = ("binary_tensor_data",)
HEADER_LENGTH = "Inference-Header-Content-Length"


def server_version() -> str:
    """The installed kcnn version (``0+unknown`` when run from a source tree)."""
    from importlib import metadata

    try:
        return metadata.version("kcnn")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def model_metadata(model, version: str) -> dict:
    """The V2 model metadata object of the served model."""
    p = model.predictor
    return {"name": model.name, "versions": [version], "platform": "onnxruntime_onnx",
            "inputs": [{"name": p.input_name, "datatype": DATATYPE,
                        "shape": [-1, *map(int, p.input_shape)]}],
            "outputs": [{"name": p.output_name, "datatype": DATATYPE,
                         "shape": [-1, model.num_classes]}]}


def _check_model(model, name: str, version: str | None, served_version: str) -> None:
    if name != model.name:
        raise RequestError(404, f"unknown model {name!r}; this server serves {model.name!r}")
    if version is not None and version != served_version:
        raise RequestError(404, f"unknown version {version!r} of model {name!r}; served version: "
                                f"{served_version!r}")


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """Request body -> (JSON header object, binary tail) per the binary tensor data extension."""
    if header_length is None:
        json_part, tail = body, b""
    else:
        text = header_length.strip()
        if not text.isdigit() or int(text) > len(body):
            raise RequestError(400, f"invalid {HEADER_LENGTH} header {header_length!r} for a body "
                                    f"of {len(body)} bytes")
        json_part, tail = body[:int(text)], body[int(text):]
    try:
        header = parse_header(json_part)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(400, f"inference request header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise RequestError(400, 'inference request must be a JSON object {"inputs": [...]}')
    return header, tail


def check_shape(shape: list, expected: tuple, max_instances: int) -> list[int]:
    """``shape`` if it is ``[n, *expected]`` with 1 <= n <= ``max_instances`` (400 / 413)."""
    if len(shape) != 1 + len(expected) or tuple(shape[1:]) != expected or shape[0] < 1:
        raise RequestError(400, f"input shape {shape} does not match the model's "
                                f"[-1, {', '.join(map(str, expected))}] (batch >= 1)")
    if shape[0] > max_instances:
        raise RequestError(413, f"a batch of {shape[0]} images exceeds the limit of "
                                f"{max_instances} per request")
    return shape


def _shape(tensor: dict, expected: tuple, max_instances: int) -> list[int]:
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or
            not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise RequestError(400, f"input 'shape' must be a list of integers, received {shape!r}")
    return check_shape(shape, expected, max_instances)


def _tensor_data(tensor: dict, shape: list[int], tail: bytes, offset: int):
    """(float32 array of ``shape``, new offset into the binary tail)."""
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError(400, "input 'parameters' must be a JSON object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size != 4 * count:
            raise RequestError(400, f"binary_data_size {size!r} does not match shape {shape} of "
                                    f"FP32 ({4 * count} bytes)")
        if offset + size > len(tail):
            raise RequestError(400, f"the body holds {len(tail) - offset} binary bytes for an "
                                    f"input of {size}")
        array = np.frombuffer(tail, dtype="<f4", count=count, offset=offset)
        return array.reshape(shape).astype(np.float32), offset + size
    data = tensor.get("data")
    if isinstance(data, np.ndarray):  # the fast JSON route's float32 array (v2_json)
        if data.size != count:
            raise RequestError(400, f"input 'data' holds {data.size} values; shape {shape} needs "
                                    f"{count}")
        return data.reshape(shape), offset
    if not isinstance(data, list):
        raise RequestError(400, "input has neither 'data' (a list) nor "
                                "parameters.binary_data_size")
    try:
        array = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(400, "input 'data' is not a rectangular list of numbers") from None
    if array.size != count:
        raise RequestError(400, f"input 'data' holds {array.size} values; shape {shape} needs "
                                f"{count}")
    return array.reshape(shape), offset


def parse_infer_request(header: dict, tail: bytes, model, max_instances: int):
    """V2 request -> (float32 batch, [(output name, binary?)], request id or None)."""
    p = model.predictor
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f"'inputs' must be a list of exactly one tensor ({p.input_name!r})")
    tensor = inputs[0]
    if tensor.get("name") != p.input_name:
        raise RequestError(400, f"unknown input {tensor.get('name')!r}; the model's input is "
                                f"{p.input_name!r}")
    if tensor.get("datatype") != DATATYPE:
        raise RequestError(400, f"input datatype {tensor.get('datatype')!r} is not accepted; "
                                f"the model's input {p.input_name!r} is {DATATYPE}")
    shape = _shape(tensor, tuple(int(d) for d in p.input_shape), max_instances)
    batch, used = _tensor_data(tensor, shape, tail, 0)
    if used != len(tail):
        raise RequestError(400, f"{len(tail) - used} unused binary bytes after the inputs")
    if not np.isfinite(batch).all():
        raise RequestError(400, "input contains NaN or infinite values")
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError(400, "request 'parameters' must be a JSON object")
    default_binary = bool(params.get("binary_data_output", False))
    outputs = header.get("outputs")
    if outputs is None:
        return batch, [(p.output_name, default_binary)], header.get("id")
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise RequestError(400, "'outputs' must be a list of {\"name\": ...} objects")
    selected = []
    for out in outputs:
        if out.get("name") != p.output_name:
            raise RequestError(400, f"unknown output {out.get('name')!r}; the model's output is "
                                    f"{p.output_name!r}")
        out_params = out.get("parameters") or {}
        if not isinstance(out_params, dict) or "class_count" in out_params:
            raise RequestError(400, "output parameters other than binary_data are not supported")
        selected.append((p.output_name, bool(out_params.get("binary_data", default_binary))))
    return batch, selected, header.get("id")


def infer_response(model, version: str, logits: np.ndarray, selected, request_id):
    """The V2 response: JSON, or JSON header + binary tail when an output asks for binary."""
    import orjson
    from starlette.responses import Response

    logits = np.ascontiguousarray(logits, dtype="<f4")
    outputs, tail = [], []
    for name, binary in selected:
        entry = {"name": name, "datatype": DATATYPE, "shape": list(logits.shape)}
        if binary:
            raw = logits.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            entry["data"] = logits.reshape(-1).tolist()
        outputs.append(entry)
    body = {"model_name": model.name, "model_version": version, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    head = orjson.dumps(body)
    if not tail:
        return Response(head, media_type="application/json")
    return Response(head + b"".join(tail), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(head))})


def kserve_v2_routes(ctx) -> list:
    """The V2 route group (see the module doc)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    model, version = ctx.model, ctx.model.version
    meta = model_metadata(model, version)

    def ready() -> bool:
        return ctx.problem() is None

    async def live(request):
        return Response(status_code=200)

    async def health_ready(request):
        return Response(status_code=200 if ready() else 503)

    async def server_metadata(request):
        return JSONResponse({"name": "kcnn", "version": server_version(),
                             "extensions": list(EXTENSIONS)})

    async def metadata(request):
        _check_model(model, request.path_params["name"], request.path_params.get("version"),
                     version)
        return JSONResponse(meta)

    async def model_ready(request):
        _check_model(model, request.path_params["name"], request.path_params.get("version"),
                     version)
        return Response(status_code=200 if ready() else 503)

    def parse(body, header_length):
        header, tail = split_body(body, header_length)
        return parse_infer_request(header, tail, model, ctx.limits.max_instances)

    async def infer(request):
        _check_model(model, request.path_params["name"], request.path_params.get("version"),
                     version)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise RequestError(415, f"Content-Encoding {encoding!r} is not supported; send the "
                                    "request uncompressed")
        with ctx.batcher.expecting():
            body = await ctx.read_body(request)
            header_length = request.headers.get(HEADER_LENGTH)
            if len(body) <= 32 * 1024:  # cheaper than a trip to a worker thread
                batch, selected, request_id = parse(body, header_length)
            else:
                batch, selected, request_id = await run_in_threadpool(parse, body, header_length)
        logits = await ctx.infer(batch)
        return infer_response(model, version, logits, selected, request_id)

    routes = [Route("/v2/health/live", live, methods=["GET"]),
              Route("/v2/health/ready", health_ready, methods=["GET"]),
              Route("/v2", server_metadata, methods=["GET"])]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, metadata, methods=["GET"]),
                   Route(base + "/ready", model_ready, methods=["GET"]),
                   Route(base + "/infer", infer, methods=["POST"])]
    return routes
