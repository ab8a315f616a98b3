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
    ``POST /v1/explain/window?layer=NAME&channel=C&row=I&col=J``  the same one-image body; one
                              output number of a conv or pooling layer taken apart
                              (:func:`kcnn.export.window.window_answer`): ``{"layer", "kind",
                              "channel", "row", "col", "window", "padding", "kernel", "bias",
                              "channel_sums", "sum", "pre_activation", "activation", "op",
                              "count", "value", "feature", ...}``. Unknown layer (or one
                              without window data) 404; a missing, non-integer or out-of-range
                              channel/row/col 400.

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
import collections
import hashlib
import pathlib
import threading

import numpy as np

from kcnn.export.explainer import Unavailable, load_explainer
from kcnn.export.serving.requests import RequestError
from kcnn.export.window import window_answer

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


class ActivationCache:
    """The explain file's activations of the last few images (clicks on one image run it once)."""

    def __init__(self, explainer, size=2):
        self._explainer = explainer
        self._size = size
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def run(self, batch):
        """:meth:`Explainer.run` of ``batch``, from the cache when the same pixels came lately."""
        key = hashlib.sha256(np.ascontiguousarray(batch, np.float32).tobytes()).digest()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        activations = self._explainer.run(batch)
        with self._lock:
            self._items[key] = activations
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return activations


def _window_query(request, explainer):
    """``(layer entry, channel, row, col)`` from the query, or :class:`RequestError`."""
    params = request.query_params
    numbers = {}
    for key in ("channel", "row", "col"):
        text = params.get(key)
        if text is None:
            raise RequestError(400, f"query parameter {key} is required (an integer)")
        try:
            numbers[key] = int(text, 10)
        except ValueError:
            raise RequestError(400, f"{key} must be an integer; received {key}={text!r}") from None
    name = params.get("layer")
    if name is None:
        raise RequestError(400, "query parameter layer is required (a conv or pooling layer's name)")
    if isinstance(explainer, Unavailable):
        raise RequestError(404, explainer.reason)
    entry = next((e for e in explainer.layers if e["name"] == name), None)
    if entry is None:
        names = [e["name"] for e in explainer.layers]
        raise RequestError(404, f"no conv or pooling layer named {name!r}; layers: {names}")
    if not entry.get("window"):
        raise RequestError(404, f"no window data for layer {name!r} ({entry['class']}); "
                                "re-export with kcnn-export --explain")
    shape = entry["shape"]  # (H, W, C) or, channels_first, (C, H, W)
    chw = shape if entry.get("data_format") == "channels_first" else [shape[2], *shape[:2]]
    for key, size in zip(("channel", "row", "col"), chw):
        if not 0 <= numbers[key] < size:
            raise RequestError(400, f"{key} must be in 0..{size - 1} for layer {name!r}; "
                                    f"received {key}={numbers[key]}")
    return entry, numbers["channel"], numbers["row"], numbers["col"]


def window_document(cache, explainer, batch, entry, channel, row, col):
    """The ``POST /v1/explain/window`` answer (runs in a worker thread)."""
    activations = cache.run(batch)
    _, output = activations.layer(entry["name"])
    source = activations.inputs[entry["output"]]
    return window_answer(entry, source, output, explainer.weights, channel, row, col)


def explain_document(explainer, batch, prediction, model_name, fmt, run=None):
    """The ``POST /v1/explain`` answer for one preprocessed image (runs in a worker thread).

    ``run`` computes the activations (default ``explainer.run``; the route passes its cache's).
    """
    activations = (run or explainer.run)(batch)
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
    cache = None if isinstance(explainer, Unavailable) else ActivationCache(explainer)

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
                                               ctx.model.name, fmt, cache.run)
        return JSONResponse(document)

    async def explain_window(request):
        entry, channel, row, col = _window_query(request, explainer)
        batch, _ = await ctx.read_inputs(request)
        if batch.shape[0] != 1:
            raise RequestError(400, f"explain takes one image per request; received "
                                    f"{batch.shape[0]}")
        async with slots:
            document = await run_in_threadpool(window_document, cache, explainer, batch, entry,
                                               channel, row, col)
        return JSONResponse(document)

    return [
        Route("/", page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/v1/explain/info", explain_info, methods=["GET"]),
        Route("/v1/explain", explain, methods=["POST"]),
        Route("/v1/explain/window", explain_window, methods=["POST"]),
    ]
