"""Request parsing for ``kcnn-serve``: body limits, JSON instances, multipart uploads, images.

Every function here raises :class:`RequestError` (a status and a message) for a client's mistake,
which the app answers as ``{"error": message}``; nothing here knows about routes.

What is a library and what stays hand-written, and why:

* ``multipart/form-data`` is parsed by python-multipart through Starlette's ``Request.form()``
  with its ``max_files`` / ``max_fields`` / ``max_part_size`` limits (over them: 413).
  File parts are the parts with a file name (what ``curl -F file=@x.png``, browsers and httpx
  send); a field named ``top_k`` is the top_k; other fields are ignored.
* :func:`read_body` stays hand-written: Starlette has no body-size limit, and the limit must
  hold while streaming (chunked uploads, clients that lie about Content-Length), before
  anything is parsed. The multipart parser then reads the already-limited body.
* The JSON ``instances`` checks stay hand-written: they are kcnn's request schema (rectangular
  numbers, uint8 pixel range, finite floats), with one precise 400/422 message per mistake.
* Image decoding is :mod:`kcnn.export.images`, shared with ``kcnn-predict`` and
  :class:`~kcnn.export.OnnxPredictor`.
"""
from __future__ import annotations

import json
import re
import warnings

import numpy as np

from kcnn.export import images

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_INSTANCES = 256
#: Seconds without body data after which a request is answered 408.
DEFAULT_READ_TIMEOUT_S = 30.0
#: Decoded-size cap for image bodies: a small PNG can inflate to gigabytes (decompression bomb).
MAX_IMAGE_PIXELS = 4096 * 4096
#: Decoded pixels of all the images of one request together (four images at the cap): a form
#: of 256 small bomb PNGs would otherwise cost minutes of decoding.
DEFAULT_MAX_REQUEST_PIXELS = 4 * MAX_IMAGE_PIXELS
#: Most non-file fields in one multipart form, and the largest one (bytes); over them: 413.
MAX_FORM_FIELDS = 64
MAX_FIELD_BYTES = 64 * 1024

_NOT_AN_IMAGE = 'body is neither a readable image (PNG, JPEG, ...) nor JSON {"instances": [...]}'


class RequestError(Exception):
    """A client error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        """``status``: the HTTP status (4xx); ``message``: one sentence for the client."""
        super().__init__(message)
        self.status = status
        self.message = message


async def _next_within(stream, timeout_s: float):
    """``stream``'s next chunk, ``TimeoutError`` after ``timeout_s`` seconds without one.

    ``asyncio.timeout`` (Python 3.11+) is a timer around the read: a body already received
    is read without leaving the request's task. ``asyncio.wait_for`` (Python 3.10) runs the
    read as a task of its own, which costs an event-loop round per chunk.
    """
    import asyncio

    if not hasattr(asyncio, "timeout"):
        return await asyncio.wait_for(stream.__anext__(), timeout_s)
    async with asyncio.timeout(timeout_s):
        return await stream.__anext__()


async def read_body(request, limit: int, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> bytes:
    """The request body, or ``RequestError(413)`` as soon as it is known to exceed ``limit`` bytes.

    The declared Content-Length is checked before reading; the stream is counted while reading, so
    chunked uploads and lying clients are stopped too. A client that sends nothing for
    ``timeout_s`` seconds mid-body gets 408 (nginx's ``client_body_timeout`` rule: the time
    between two reads, so slow but steady uploads pass); one that disconnects, 400.
    """
    import asyncio

    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"invalid Content-Length header: {declared!r}")
        if int(declared) > limit:
            raise RequestError(413, f"request body of {int(declared)} bytes exceeds the limit of "
                                    f"{limit} bytes")
    chunks, size = [], 0
    stream = request.stream()
    try:
        while True:
            try:
                chunk = await _next_within(stream, timeout_s)
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except asyncio.TimeoutError:
        raise RequestError(408, f"no body data received for {timeout_s:g} s") from None
    except ClientDisconnect:
        raise RequestError(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def is_json(content_type: str, body: bytes) -> bool:
    """Whether a body is JSON: a JSON media type, or no image type and an opening ``{``."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return True
    if media.startswith("image/"):
        return False
    # curl -d sends form content types; a body opening with "{" is no image format.
    return body.lstrip()[:1] == b"{"


def is_multipart(content_type: str) -> bool:
    """Whether the content type is ``multipart/form-data``."""
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def parse_top_k(value, num_classes: int, source: str) -> int:
    """Validate a ``top_k`` from the query string (str) or the JSON body (int)."""
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only and a bounded length: str.isdigit() also accepts superscripts that
        # int() rejects, and int() refuses strings of thousands of digits.
        value = int(text) if re.fullmatch(r"-?[0-9]{1,9}", text) else value
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


async def parse_multipart_body(body: bytes, content_type: str, *,
                               max_files: int = DEFAULT_MAX_INSTANCES,
                               max_fields: int = MAX_FORM_FIELDS,
                               max_field_bytes: int = MAX_FIELD_BYTES
                               ) -> tuple[list[bytes], object]:
    """``multipart/form-data`` (``curl -F file=@digit.png``) -> (file parts' bytes, raw top_k or None).

    Parsed by Starlette's ``Request.form()`` (python-multipart) over the body already read; more
    than ``max_files`` files, ``max_fields`` other fields or a field over ``max_field_bytes``
    is a 413, a malformed body a 400.
    """
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    # A scope without "app": Starlette then raises MultiPartException (limits are told apart
    # from malformed bodies below) instead of turning every parse error into a 400.
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", content_type.encode("latin-1", "replace"))]}
    try:
        async with Request(scope, receive).form(max_files=max_files, max_fields=max_fields,
                                                max_part_size=max_field_bytes) as form:
            files = [await value.read() for _, value in form.multi_items()
                     if isinstance(value, UploadFile)]
            top_k = form.get("top_k")
            top_k = top_k if isinstance(top_k, str) else None
    except MultiPartException as exc:
        # Starlette tells its limits apart from parse errors only by the message.
        if exc.message.startswith(("Too many", "Part exceeded")):
            raise RequestError(413, f"multipart/form-data body over the limits: {exc.message}"
                               ) from None
        raise RequestError(400, f"malformed multipart/form-data body: {exc.message}") from None
    if not files:
        raise RequestError(400, "multipart/form-data body holds no file part; send the image as "
                                "e.g. curl -F file=@image.png")
    return files, top_k


def decode_image(body: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Image bytes -> uint8 array through :func:`kcnn.export.images.decode`, limited to
    ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`); 413 over the limit, 400 if unreadable."""
    if not body:
        raise RequestError(400, "empty request body: send an image file or JSON "
                                '{"instances": [...]}')
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        return images.decode(body, max_pixels=limit)
    except images.ImageTooLargeError as exc:
        raise RequestError(413, str(exc)) from None
    except images.ImageError:
        raise RequestError(400, _NOT_AN_IMAGE) from None


#: Bodies up to this size are decoded on the event loop (well under a millisecond for small
#: images); larger ones in a worker thread, so decoding never blocks the loop for long.
INLINE_DECODE_BYTES = 32 * 1024
#: Images (within INLINE_DECODE_BYTES) of at most this many pixels, read from the header, are
#: decoded on the event loop (a 128x128 PNG: well under a millisecond); larger ones in a thread.
INLINE_DECODE_PIXELS = 128 * 128


def parse_inline(parse, budget: "PixelBudget"):
    """``parse(budget.inline())`` for decoding on the event loop, or None when an image declares
    more pixels than the inline cap (a 413 there): the caller then parses in a worker thread with
    the full ``budget``, which judges the image for real."""
    try:
        return parse(budget.inline())
    except RequestError as exc:
        if exc.status == 413:
            return None
        raise


class PixelBudget:
    """The decoded pixels one request may still use: each image at most ``per_image``, all of
    them together at most ``total``. Each image's size is checked from its header before its
    pixels are decoded (``kcnn.export.images``); over either limit: 413.

    Decode and preprocess one image at a time (``[preprocess(budget.decode(b)) for b in ...]``)
    so that at most one full-size image is in memory.
    """

    def __init__(self, per_image: int = MAX_IMAGE_PIXELS, total: int = DEFAULT_MAX_REQUEST_PIXELS):
        """``per_image``: largest ``width * height``; ``total``: the sum over the request."""
        self.per_image, self.total, self.left = per_image, total, total

    def inline(self) -> "PixelBudget":
        """This budget with each image capped at :data:`INLINE_DECODE_PIXELS`: for decoding on
        the event loop, where a 413 means "decode it in a worker thread" (with this budget)."""
        return PixelBudget(min(INLINE_DECODE_PIXELS, self.per_image), self.total)

    def decode(self, body: bytes) -> np.ndarray:
        """:func:`decode_image` within what is left of the budget; charges the image's pixels."""
        limit = min(self.per_image, self.left)
        try:
            image = decode_image(body, limit)
        except RequestError as exc:
            if exc.status == 413 and limit < self.per_image:
                raise RequestError(413, f"the request's images together exceed the limit of "
                                        f"{self.total} decoded pixels") from None
            raise
        self.left -= image.shape[0] * image.shape[1]
        return image
