"""The "see inside" page of ``kcnn-serve`` and the data that feeds it (a route group).

Endpoints
    ``GET /``                 the page (``static/index.html``); its script and style sheet are
                              served from the package under ``/static/`` (no CDN, no internet).
    ``GET /v1/explain/info``  ``{"available": true, "file", "layers": [{"name", "kind", "class",
                              "shape"}], "kernel": {"layer", "shape"}}``, or ``{"available": false,
                              "reason": ...}`` for a model exported without explain data.
    ``POST /v1/explain``      ONE image, in any body format ``POST /v1/predict`` takes (image file,
                              multipart, JSON ``{"instances": [one]}``); query ``top_k`` (as for
                              predict) and ``format`` (``float32``, the default, or ``uint8``).

``POST /v1/explain`` answers::

    {"model": name,
     "prediction": {"label", "index", "score", "top_k": [...]},   # exactly /v1/predict's item
     "input":  {"shape": [H, W, C], <array>},                     # after resize and scaling
     "layers": [{"name", "kind": "conv" | "pool", "class", "shape": [H, W, C], <array>}, ...],
     "kernel": {"layer", "shape": [kh, kw, in, out], <array>} | null}

where ``<array>`` is ``"layout"`` (``"CHW"``; ``"OIHW"`` for the kernel), ``"dtype"``, ``"min"``,
``"max"`` (of the finite values) and ``"data"``: base64 of the values in that layout, little-endian
float32, or for ``format=uint8`` each value mapped linearly from ``[min, max]`` to ``0..255``
(the page's grey levels; the kernel is always float32). The prediction comes from the served model
through the same micro-batcher as ``/v1/predict``; the activations from the explain file
(:class:`kcnn.export.explainer.Explainer`). Without explain data the answer is 404
``{"error": reason}``; more than one image is 400; body limits and errors are ``/v1/predict``'s.
"""
from __future__ import annotations

import asyncio
import base64
import pathlib

import numpy as np

from kcnn.export.explainer import Unavailable, load_explainer
from kcnn.export.serving.requests import RequestError

STATIC_DIR = pathlib.Path(__file__).with_name("static")
FORMATS = ("float32", "uint8")
#: Explain requests computed at once (each holds every activation of one image in memory).
MAX_CONCURRENT_EXPLAINS = 2
#: The page loads nothing from elsewhere; the policy makes the browser enforce it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self'; script-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def encode_array(array, fmt="float32"):
    """``array`` as JSON: ``{"dtype", "min", "max", "data"}`` (base64, C order, see module doc)."""
    array = np.asarray(array, dtype=np.float32)
    finite = array[np.isfinite(array)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    if fmt == "uint8":
        span = hi - lo
        scaled = (np.nan_to_num(array, nan=lo, posinf=hi, neginf=lo) - lo) / (span or 1.0)
        data = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8).tobytes()
    else:
        data = array.astype("<f4").tobytes()
    return {"dtype": fmt, "min": lo, "max": hi, "data": base64.b64encode(data).decode("ascii")}


def _parse_format(value):
    if value is None:
        return "float32"
    if value not in FORMATS:
        raise RequestError(400, f"format must be one of {list(FORMATS)}, received: {value!r}")
    return value


def explain_document(explainer, batch, prediction, model_name, fmt):
    """The ``POST /v1/explain`` answer for one preprocessed image (runs in a worker thread)."""
    activations = explainer.run(batch)
    image = batch[0]
    document = {
        "model": model_name,
        "prediction": prediction,
        "input": {"shape": list(image.shape), "layout": "CHW",
                  **encode_array(np.moveaxis(image, -1, 0), fmt)},
        "layers": [
            {"name": entry["name"], "kind": entry["kind"], "class": entry["class"],
             "shape": entry["shape"], "layout": "CHW", **encode_array(array, fmt)}
            for entry, array in activations.layers],
        "kernel": None,
    }
    if explainer.kernel is not None:  # HWIO -> OIHW: one contiguous kh x kw tile per pair
        kernel = np.transpose(explainer.kernel, (3, 2, 0, 1))
        document["kernel"] = {"layer": explainer.kernel_info["layer"],
                              "shape": list(explainer.kernel.shape), "layout": "OIHW",
                              **encode_array(kernel, "float32")}
    return document


def explain_routes(ctx) -> list:
    """The page, its static files, ``GET /v1/explain/info`` and ``POST /v1/explain``.

    ``ctx`` is the app's :class:`~kcnn.export.serving.app.ServingContext`; the explain file is
    looked up beside the served model (``model.onnx`` -> ``model.explain.onnx``).
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    predictor = ctx.model.predictor
    path = getattr(predictor, "path", None)
    explainer = (load_explainer(path, predictor) if path is not None
                 else Unavailable("no explain data: the served model has no file path"))
    info = ({"available": False, "reason": explainer.reason}
            if isinstance(explainer, Unavailable) else explainer.info())
    slots = asyncio.Semaphore(MAX_CONCURRENT_EXPLAINS)

    async def page(request):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers=PAGE_HEADERS)

    async def explain_info(request):
        return JSONResponse(info)

    async def explain(request):
        fmt = _parse_format(request.query_params.get("format"))
        if isinstance(explainer, Unavailable):
            raise RequestError(404, explainer.reason)
        batch, top_k = await ctx.read_inputs(request)
        if batch.shape[0] != 1:
            raise RequestError(400, f"explain takes one image per request; received "
                                    f"{batch.shape[0]}")
        logits = await ctx.infer(batch)  # the very path /v1/predict takes
        prediction = ctx.model.postprocess(logits, top_k)[0]
        async with slots:
            document = await run_in_threadpool(explain_document, explainer, batch, prediction,
                                               ctx.model.name, fmt)
        return JSONResponse(document)

    return [
        Route("/", page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/v1/explain/info", explain_info, methods=["GET"]),
        Route("/v1/explain", explain, methods=["POST"]),
    ]
