"""TensorFlow Serving's REST API (the predict subset) for the served model.

Routes (``NAME`` and ``V`` are ``--model-name`` / ``--model-version``):

    POST /v1/models/NAME:predict, /v1/models/NAME/versions/V:predict
        ``{"instances": [...]}`` (row format) -> ``{"predictions": [logits row, ...]}``, or
        ``{"inputs": [...]}`` / ``{"inputs": {"images": [...]}}`` (columnar) ->
        ``{"outputs": [logits row, ...]}``. An instance is a nested list (integers: uint8 pixels
        of any size, resized and scaled as the model's metadata says; floats: an already
        preprocessed ``(H, W, C)`` input), ``{"b64": "<base64 image file>"}`` (PNG, JPEG, ...
        decoded by :mod:`kcnn.export.images`, then preprocessed), or ``{"images": <either>}``.
        ``signature_name`` may be given as ``serving_default``.
    GET  /v1/models/NAME, /v1/models/NAME/versions/V
        ``{"model_version_status": [{"version", "state": "AVAILABLE", "status"}]}``

Errors are TF Serving's ``{"error": "..."}`` with 400 (malformed, bad b64, wrong shape), 404
(unknown model or version) or 413 (over the body, instance or pixel limits). Images go through
the app's micro-batcher like ``/v1/predict``. ``:classify``, ``:regress`` and gRPC are not served.
"""
from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from kcnn.export.serving import requests as req
from kcnn.export.serving.requests import RequestError

SIGNATURE = "serving_default"


def _check_model(model, name: str, version: str | None, served_version: str) -> None:
    if name != model.name:
        raise RequestError(404, f"Servable not found for request: Latest({name}); this server "
                                f"serves {model.name!r}")
    if version is not None and version != served_version:
        raise RequestError(404, f"Servable not found for request: Specific({name}, {version}); "
                                f"served version: {served_version!r}")


def _instance(value, index: int, model, input_name: str, budget) -> np.ndarray:
    """One instance -> a float32 batch of one."""
    if isinstance(value, dict):
        if set(value) == {input_name}:
            return _instance(value[input_name], index, model, input_name, budget)
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise RequestError(400, f"instances[{index}] must be a nested list, "
                                    f'{{"b64": "<base64 image>"}} or {{"{input_name}": ...}}; '
                                    f"received an object with keys {sorted(value)}")
        try:
            data = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"instances[{index}].b64 is not valid base64") from None
        return model.preprocess(budget.decode(data))
    return model.preprocess(req.instance_array(value, index))


def parse_predict_body(body: bytes, model, max_instances: int, budget):
    """A predict request -> (float32 batch, response key ``predictions`` or ``outputs``);
    ``budget``: the request's :class:`~kcnn.export.serving.requests.PixelBudget` for b64 images."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(400, f"JSON Parse error: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'request must be a JSON object {"instances": [...]}')
    unknown = sorted(set(payload) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {unknown}; accepted: instances, inputs, "
                                "signature_name")
    signature = payload.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise RequestError(400, f"unknown signature_name {signature!r}; the model has "
                                f"{SIGNATURE!r}")
    if ("instances" in payload) == ("inputs" in payload):
        raise RequestError(400, 'give exactly one of "instances" (row format) or "inputs" '
                                "(columnar format)")
    key, answer = ("instances", "predictions") if "instances" in payload else ("inputs", "outputs")
    values = payload[key]
    input_name = model.predictor.input_name
    if key == "inputs" and isinstance(values, dict):
        if set(values) != {input_name}:
            raise RequestError(400, f'"inputs" must name the one input {input_name!r}; received '
                                    f"{sorted(values)}")
        values = values[input_name]
    if not isinstance(values, list) or not values:
        raise RequestError(400, f'"{key}" must be a non-empty list of instances')
    if len(values) > max_instances:
        raise RequestError(413, f"{len(values)} instances exceed the limit of {max_instances} "
                                "per request")
    batch = [_instance(v, i, model, input_name, budget) for i, v in enumerate(values)]
    return np.concatenate(batch), answer


def tfserving_routes(ctx) -> list:
    """The TF Serving REST route group (see the module doc)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    model, version = ctx.model, ctx.model.version

    def parse(body, budget=None):
        return parse_predict_body(body, model, ctx.limits.max_instances,
                                  budget or ctx.limits.pixel_budget())


    async def predict(request):
        _check_model(model, request.path_params["name"], request.path_params.get("version"),
                     version)
        with ctx.batcher.expecting():
            body = await ctx.read_body(request)
            parsed = (req.parse_inline(lambda budget: parse(body, budget), ctx.limits.pixel_budget())
                      if len(body) <= req.INLINE_DECODE_BYTES else None)
            if parsed is None:
                parsed = await run_in_threadpool(parse, body)
            batch, answer = parsed
        logits = await ctx.infer(batch)
        return JSONResponse({answer: np.asarray(logits, dtype=np.float32).tolist()})

    async def status(request):
        _check_model(model, request.path_params["name"], request.path_params.get("version"),
                     version)
        state = "AVAILABLE" if ctx.batcher.running else "UNAVAILABLE"
        return JSONResponse({"model_version_status": [
            {"version": version, "state": state,
             "status": {"error_code": "OK", "error_message": ""}}]})

    return [Route("/v1/models/{name}:predict", predict, methods=["POST"]),
            Route("/v1/models/{name}/versions/{version}:predict", predict, methods=["POST"]),
            Route("/v1/models/{name}", status, methods=["GET"]),
            Route("/v1/models/{name}/versions/{version}", status, methods=["GET"])]
