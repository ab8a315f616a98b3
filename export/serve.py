"""HTTP serving of an ONNX image classifier (``kcnn-serve``).

The server is a Starlette ASGI app run by uvicorn. It needs nothing but the ONNX file: labels and
preprocessing come from its metadata through :class:`kcnn.export.OnnxPredictor`.

Endpoints
    ``POST /v1/predict``  an image file body (PNG, JPEG, ... any content type but JSON), a
                          multipart form with file part(s) (``curl -F file=@x.png``), or JSON
                          ``{"instances": [array, ...], "top_k": K}``; ``top_k`` may also be a query
                          parameter (or a form field). Answers ``{"predictions": [{"label", "index", "score",
                          "top_k": [{"label", "index", "score"}, ...]}, ...]}``, one per image.
    ``GET /v1/health``    ``{"status": "ok"}``
    ``GET /v1/metadata``  labels, preprocessing, input/output names and shapes, provider, model name.
    ``GET /v1/stats``     request, image and onnxruntime-call counters of the micro-batcher.

Concurrent requests are queued and merged by :class:`MicroBatcher` into one onnxruntime call (at most
``max_batch`` images, waiting at most ``max_wait_ms`` for company), which runs in a worker thread so
the event loop keeps accepting requests. Bad payloads get a 4xx JSON ``{"error": ...}``; bodies over
``max_body_bytes``, JSON with more than ``max_instances`` images and images over
``MAX_IMAGE_PIXELS`` get 413.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import io
import json
import math
import os
import signal
import socket
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from kcnn import argtypes

DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_INSTANCES = 256
# Decoded-size cap for image bodies: a small PNG can inflate to gigabytes (decompression bomb).
MAX_IMAGE_PIXELS = 4096 * 4096
# Bodies up to this size are decoded on the event loop (well under a millisecond for small images).
INLINE_DECODE_BYTES = 32 * 1024


class BatcherStopped(RuntimeError):
    """Raised for requests still queued when the micro-batcher shuts down."""


# --------------------------------------------------------------------------------------------------
# Micro-batching
# --------------------------------------------------------------------------------------------------
@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future


@dataclass
class BatcherStats:
    """Counters of a :class:`MicroBatcher`; ``batch_sizes`` maps images-per-call to a call count."""

    requests: int = 0
    images: int = 0
    calls: int = 0
    errors: int = 0
    batch_sizes: dict = field(default_factory=lambda: collections.Counter())

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "images": self.images,
            "calls": self.calls,
            "errors": self.errors,
            "mean_batch_size": self.images / self.calls if self.calls else 0.0,
            "max_batch_size": max(self.batch_sizes, default=0),
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


class MicroBatcher:
    """Merge concurrent ``submit`` calls into few calls of a batch function.

    ``run(batch) -> outputs`` takes a float32 array ``(n, ...)`` and returns an array whose first
    dimension is ``n``. It runs in one dedicated worker thread, so calls never overlap and the event
    loop stays free. While a call runs, new requests queue up and form the next batch. A batch is
    closed when it holds ``max_batch`` images, or when no more requests are on their way, or
    ``max_wait_ms`` after its first request arrived, whichever comes first. "On their way" are the
    requests announced with :meth:`expecting` (the server wraps body reading and decoding in it), so
    a lone request never waits for company that is not coming. A single request larger than
    ``max_batch`` is run alone, in slices of ``max_batch``.

    Use inside a running event loop: ``await start()``, ``await submit(x)``..., ``await stop()``
    (or ``async with MicroBatcher(...)``).
    """

    def __init__(self, run, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, received: max_batch={max_batch!r}")
        if (isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float))
                or not math.isfinite(max_wait_ms) or max_wait_ms < 0):
            raise ValueError("max_wait_ms must be a finite number >= 0, "
                             f"received: max_wait_ms={max_wait_ms!r}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatcherStats()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = False
        self._incoming = 0

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        if self._task is not None:
            raise RuntimeError("MicroBatcher already started")
        self._stopping = False
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kcnn-batcher")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kcnn-batcher")

    async def stop(self) -> None:
        """Stop batching; requests still queued fail with :class:`BatcherStopped`."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatcherStopped("the server is shutting down"))
        if self._executor is not None:  # wait for a call in flight without blocking the loop
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)

    @contextlib.contextmanager
    def expecting(self):
        """Announce a request being prepared: open batches wait (up to max_wait_ms) for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._wakeup is not None:
                self._wakeup.set()

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Queue ``images`` (a batch, first dimension >= 1) and return their rows of the output."""
        if self._task is None or self._stopping:
            raise BatcherStopped("the micro-batcher is not running")
        images = np.asarray(images)
        if images.ndim < 1 or images.shape[0] < 1:
            raise ValueError(f"images must be a non-empty batch, received shape {images.shape}")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(images, future))
        self.stats.requests += 1
        self._wakeup.set()
        return await future

    async def _next_batch(self) -> list[_Pending]:
        """Wait for a first request, then gather more until full or the wait is over."""
        loop = asyncio.get_running_loop()
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = [self._queue.popleft()]
        size = len(batch[0].images)
        deadline = loop.time() + self.max_wait
        yielded = False
        while size < self.max_batch:
            if not self._queue:
                if not yielded:  # let handlers that are ready to submit do so
                    yielded = True
                    await asyncio.sleep(0)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or self._incoming <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                continue
            if size + len(self._queue[0].images) > self.max_batch:
                break  # the next request opens the next batch
            batch.append(self._queue.popleft())
            size += len(batch[-1].images)
        return batch

    def _run_sliced(self, images: np.ndarray) -> tuple[np.ndarray, list[int]]:
        outputs, sizes = [], []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            out = np.asarray(self._run(chunk))
            if out.ndim < 1 or out.shape[0] != len(chunk):
                raise RuntimeError(f"the batch function returned shape {out.shape} "
                                   f"for a batch of {len(chunk)}")
            outputs.append(out)
            sizes.append(len(chunk))
        return (outputs[0] if len(outputs) == 1 else np.concatenate(outputs)), sizes

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [p for p in await self._next_batch() if not p.future.done()]
            if not batch:
                continue  # every client of this batch went away
            try:
                images = (batch[0].images if len(batch) == 1
                          else np.concatenate([p.images for p in batch]))
                outputs, sizes = await loop.run_in_executor(self._executor, self._run_sliced, images)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BatcherStopped("the server is shutting down"))
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                self.stats.errors += 1
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.stats.calls += len(sizes)
            self.stats.images += len(images)
            self.stats.batch_sizes.update(sizes)
            start = 0
            for p in batch:
                stop = start + len(p.images)
                if not p.future.done():
                    p.future.set_result(outputs[start:stop])
                start = stop


# --------------------------------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------------------------------
class RequestError(Exception):
    """A client error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request, limit: int) -> bytes:
    """The request body, or ``RequestError(413)`` as soon as it is known to exceed ``limit`` bytes.

    The declared Content-Length is checked before reading; the stream is counted while reading, so
    chunked uploads and lying clients are stopped too.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"invalid Content-Length header: {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"request body of {int(declared)} bytes exceeds the limit of "
                                    f"{limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str, body: bytes) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return True
    if media.startswith("image/"):
        return False
    # curl -d sends form content types; a body opening with "{" is no image format.
    return body.lstrip()[:1] == b"{"


def parse_top_k(value, num_classes: int, source: str) -> int:
    """Validate a ``top_k`` from the query string (str) or the JSON body (int)."""
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.lstrip("-").isdigit() else value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= num_classes:
        raise RequestError(400, f"top_k ({source}) must be an integer from 1 to {num_classes}, "
                                f"received: {value!r}")
    return value


def instance_array(value, index: int) -> np.ndarray:
    """One JSON instance as an array: integers → uint8 pixels, other numbers → float32 inputs."""
    name = f"instances[{index}]"
    if not isinstance(value, list):
        raise RequestError(400, f"{name} must be a nested list of numbers, received "
                                f"{type(value).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(400, f"{name} is not a rectangular nested list of numbers") from None
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise RequestError(400, f"{name} must be a non-empty rectangular nested list of numbers "
                                f"(got {array.dtype.kind!r} data of shape {array.shape})")
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise RequestError(422, f"{name}: integer pixels must lie in [0, 255], received values "
                                    f"from {array.min()} to {array.max()}")
        return array.astype(np.uint8)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise RequestError(422, f"{name} contains NaN or infinite values")
    return array


def parse_json_body(body: bytes, max_instances: int = DEFAULT_MAX_INSTANCES
                    ) -> tuple[list[np.ndarray], object]:
    """``{"instances": [...], "top_k": K}`` → (arrays, raw top_k or None)."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RequestError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'JSON body must be an object {"instances": [...], "top_k": K}')
    unknown = sorted(set(payload) - {"instances", "top_k"})
    if unknown:
        raise RequestError(400, f"unknown JSON field(s) {unknown}; accepted: instances, top_k")
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, '"instances" must be a non-empty list of arrays, received: '
                                f"{type(instances).__name__ if instances is not None else 'nothing'}")
    if len(instances) > max_instances:
        raise RequestError(413, f"{len(instances)} instances exceed the limit of {max_instances} "
                                "per request")
    return [instance_array(v, i) for i, v in enumerate(instances)], payload.get("top_k")


def parse_multipart_body(body: bytes, content_type: str) -> tuple[list[bytes], object]:
    """``multipart/form-data`` (``curl -F file=@digit.png``) → (image files' bytes, raw top_k or None).

    Every part that carries a file name or an image content type is one image, in order; a field
    named ``top_k`` is the top_k. Parsed with the standard library's MIME parser.
    """
    import email.parser
    import email.policy

    try:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
        parts = list(message.iter_parts()) if message.is_multipart() else []
        files, top_k = [], None
        for part in parts:
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() or part.get_content_maintype() == "image":
                files.append(part.get_payload(decode=True) or b"")
            elif name == "top_k":
                top_k = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    except (ValueError, TypeError, UnicodeError, IndexError, LookupError):
        raise RequestError(400, "malformed multipart/form-data body") from None
    if not files:
        raise RequestError(400, "multipart/form-data body holds no file part; send the image as "
                                "e.g. curl -F file=@image.png")
    return files, top_k


def decode_image(body: bytes) -> np.ndarray:
    """PNG/JPEG/... bytes → uint8 array, (H, W) for gray images, (H, W, 3) otherwise."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not body:
        raise RequestError(400, "empty request body: send an image file or JSON "
                                '{"instances": [...]}')
    try:
        with Image.open(io.BytesIO(body)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise RequestError(413, f"image of {width}x{height} pixels exceeds the limit of "
                                        f"{MAX_IMAGE_PIXELS} pixels")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                return (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            gray = image.mode in ("1", "L", "LA", "F") or (
                image.mode == "P" and image.palette is not None and image.palette.mode == "L")
            return np.asarray(image.convert("L" if gray else "RGB"), dtype=np.uint8)
    except RequestError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise RequestError(400, "body is neither a readable image (PNG, JPEG, ...) nor JSON "
                                '{"instances": [...]}') from None


# --------------------------------------------------------------------------------------------------
# Model adapter: what the server needs from an OnnxPredictor
# --------------------------------------------------------------------------------------------------
class ServedModel:
    """The :class:`~kcnn.export.OnnxPredictor` as the server uses it: one image at a time in,
    batches through onnxruntime, JSON-ready predictions out."""

    def __init__(self, predictor, name: str | None = None):
        self.predictor = predictor
        self.labels = [str(label) for label in predictor.labels]
        self.num_classes = len(self.labels)
        path = getattr(predictor, "path", None)
        self.name = (name or predictor.metadata.get("kcnn.model")
                     or (os.path.splitext(os.path.basename(str(path)))[0] if path else "model"))

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """One image → float32 batch of one; the predictor's ValueError/TypeError become 422."""
        try:
            batch = self.predictor.preprocess(image)
        except (ValueError, TypeError) as exc:
            raise RequestError(422, str(exc)) from None
        if batch.shape[0] != 1:
            raise RequestError(422, f"each instance must be ONE image; received an array of shape "
                                    f"{image.shape}, which holds {batch.shape[0]}")
        return batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.predictor.run(batch)

    def postprocess(self, outputs: np.ndarray, top_k: int) -> list[dict]:
        """Model outputs → ``[{"label", "index", "score", "top_k": [...]}, ...]``, ranked exactly
        as :meth:`OnnxPredictor.predict` ranks them."""
        ranked_lists = self.predictor.postprocess(outputs, top_k=top_k).to_list()
        return [{**ranked[0], "top_k": ranked} for ranked in ranked_lists]

    def metadata(self) -> dict:
        p = self.predictor
        extra = {k: v for k, v in p.metadata.items()
                 if k not in ("kcnn.labels", "kcnn.preprocessing")}
        return {
            "model": self.name,
            "labels": self.labels,
            "num_classes": self.num_classes,
            "preprocessing": p.preprocessing,
            "inputs": [{"name": p.input_name, "shape": [None, *p.input_shape],
                        "type": "tensor(float)"}],
            "outputs": [{"name": p.output_name, "shape": [None, self.num_classes],
                         "type": "tensor(float)",
                         "kind": getattr(p, "output_kind", "logits")}],
            "provider": p.provider,
            "properties": extra,
        }


# --------------------------------------------------------------------------------------------------
# ASGI app
# --------------------------------------------------------------------------------------------------
def _error(status: int, message: str, headers=None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(predictor, *, max_batch: int = DEFAULT_MAX_BATCH,
               max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_instances: int = DEFAULT_MAX_INSTANCES, model_name: str | None = None):
    """A Starlette app serving ``predictor`` (an :class:`~kcnn.export.OnnxPredictor`).

    The micro-batcher starts and stops with the app's lifespan.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    for name, value in (("max_body_bytes", max_body_bytes), ("max_instances", max_instances)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, received: {name}={value!r}")
    model = ServedModel(predictor, model_name)
    batcher = MicroBatcher(model.run, max_batch=max_batch, max_wait_ms=max_wait_ms)
    static_metadata = model.metadata()
    limits = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_body_bytes": max_body_bytes,
              "max_instances": max_instances, "max_image_pixels": MAX_IMAGE_PIXELS}

    def prepare(body: bytes, content_type: str):
        if _is_json(content_type, body):
            images, top_k = parse_json_body(body, max_instances)
        elif content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
            files, top_k = parse_multipart_body(body, content_type)
            if len(files) > max_instances:
                raise RequestError(413, f"{len(files)} files exceed the limit of {max_instances} "
                                        "per request")
            images = [decode_image(f) for f in files]
        else:
            images, top_k = [decode_image(body)], None
        batch = np.concatenate([model.preprocess(image) for image in images])
        return batch, top_k

    async def predict(request):
        query_top_k = request.query_params.get("top_k")
        if query_top_k is not None:
            top_k = parse_top_k(query_top_k, model.num_classes, "query parameter")
        with batcher.expecting():
            try:
                body = await read_body(request, max_body_bytes)
            except ClientDisconnect:
                return _error(400, "client disconnected before the body was complete")
            content_type = request.headers.get("content-type", "")
            if len(body) <= INLINE_DECODE_BYTES:  # cheaper than a trip to a worker thread
                batch, body_top_k = prepare(body, content_type)
            else:
                batch, body_top_k = await run_in_threadpool(prepare, body, content_type)
        if query_top_k is not None and body_top_k is not None:
            raise RequestError(400, "top_k given both as query parameter and in the body; use one")
        if body_top_k is not None:
            top_k = parse_top_k(body_top_k, model.num_classes, "body field")
        elif query_top_k is None:
            top_k = 1
        logits = await batcher.submit(batch)
        return JSONResponse({"predictions": model.postprocess(logits, top_k)})

    async def health(request):
        return JSONResponse({"status": "ok"})

    async def metadata(request):
        return JSONResponse({**static_metadata, "limits": limits})

    async def stats(request):
        return JSONResponse(batcher.stats.as_dict())

    async def on_request_error(request, exc: RequestError):
        return _error(exc.status, exc.message)

    async def on_http_error(request, exc: HTTPException):
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    async def on_stopped(request, exc: BatcherStopped):
        return _error(503, str(exc))

    async def on_unexpected(request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with batcher:
            yield

    app = Starlette(
        routes=[
            Route("/v1/predict", predict, methods=["POST"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/v1/metadata", metadata, methods=["GET"]),
            Route("/v1/stats", stats, methods=["GET"]),
        ],
        exception_handlers={
            RequestError: on_request_error,
            HTTPException: on_http_error,
            BatcherStopped: on_stopped,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.model = model
    return app


# --------------------------------------------------------------------------------------------------
# Running the server
# --------------------------------------------------------------------------------------------------
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


def serve(path, host: str = "127.0.0.1", port: int = 8000, *, max_batch: int = DEFAULT_MAX_BATCH,
          max_wait_ms: float = DEFAULT_MAX_WAIT_MS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
          max_instances: int = DEFAULT_MAX_INSTANCES, providers=None, access_log: bool = False,
          log_level: str = "warning") -> None:
    """Serve the ONNX classifier at ``path`` over HTTP until SIGINT/SIGTERM.

    Binds ``host`` (loopback by default) and ``port`` (0: any free port), then prints one line
    ``serving PATH on http://HOST:PORT`` to stdout once requests are accepted. A SIGTERM or SIGINT
    finishes the requests in flight, stops the micro-batcher and returns normally.
    """
    import uvicorn

    from kcnn.export.predictor import OnnxPredictor

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, received: port={port!r}")
    predictor = OnnxPredictor(path, providers=providers)
    app = create_app(predictor, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     max_body_bytes=max_body_bytes, max_instances=max_instances)
    sock = _bind(host, port)
    url = _url(sock)
    if not _is_loopback(sock.getsockname()[0]):
        print(f"kcnn-serve: warning: listening on {url}, reachable from other machines; the server "
              "has no authentication or TLS", file=sys.stderr, flush=True)

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(f"serving {path} on {url}", flush=True)

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=10)
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
    if not server.started:
        raise RuntimeError(f"the server for {path} on {url} failed to start")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kcnn-serve",
        description="Serve an ONNX image classifier over HTTP: POST /v1/predict (image file body or "
                    'JSON {"instances": [...]}), GET /v1/health, GET /v1/metadata, GET /v1/stats.')
    parser.add_argument("model", help="ONNX file written by kcnn-export")
    parser.add_argument("--host", metavar="ADDRESS", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", metavar="N", type=argtypes.port, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument("--max-batch", metavar="N", type=argtypes.positive_int, default=DEFAULT_MAX_BATCH,
                        help=f"most images per onnxruntime call (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--max-wait-ms", metavar="MS", type=argtypes.non_negative_float, default=DEFAULT_MAX_WAIT_MS,
                        help="longest wait for more requests to fill a batch "
                             f"(default {DEFAULT_MAX_WAIT_MS:g} ms)")
    parser.add_argument("--max-body-bytes", metavar="N", type=argtypes.positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body; larger ones get 413 (default "
                             f"{DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-instances", metavar="N", type=argtypes.positive_int, default=DEFAULT_MAX_INSTANCES,
                        help="most images in one JSON request; more get 413 (default "
                             f"{DEFAULT_MAX_INSTANCES})")
    parser.add_argument("--providers", metavar="LIST", default=None,
                        help="comma-separated onnxruntime execution providers, in order of "
                             "preference (default: CUDA if it loads, else CPU)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def main(argv=None) -> int:
    """``kcnn-serve`` entry point: returns 0 after a clean shutdown, 2 on bad input."""
    args = build_parser().parse_args(argv)
    providers = ([p.strip() for p in args.providers.split(",") if p.strip()]
                 if args.providers else None)
    if not os.path.isfile(args.model):
        print(f"kcnn-serve: error: model file not found: {args.model}", file=sys.stderr)
        return 2
    try:
        serve(args.model, args.host, args.port, max_batch=args.max_batch,
              max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
              max_instances=args.max_instances, providers=providers, access_log=args.access_log)
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"kcnn-serve: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
