"""The one image decoder: files, bytes and PIL images -> uint8 arrays, the same way everywhere.

``kcnn-predict`` (files), :class:`~kcnn.export.OnnxPredictor` (PIL images) and ``kcnn-serve``
(request bodies) all go through :func:`to_array`, so one picture gives one prediction whichever
way it arrives. The rules:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): a phone photo taken upright is
  classified upright.
* Gray images stay gray, ``(H, W)``: modes ``1``, ``L``, ``LA``, 16-bit ``I;16*``, ``I``, ``F``
  and palette images whose colours are all gray levels (gray GIFs). Everything else becomes RGB ``(H, W, 3)``: ``P``
  (colour palettes, with or without transparency), ``RGBA``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``.
* Alpha is dropped (the colour under it is kept), as ``keras.utils.load_img`` and torchvision's
  ``convert("RGB")`` do.
* 16 bits per sample become 8 by keeping the high byte (``v >> 8``). Pillow itself decodes
  16-bit-per-channel RGB PNGs to 8-bit RGB that way, so 16-bit gray and 16-bit colour images are
  scaled alike (``65535 -> 255``, ``257 * v -> v``). 32-bit integer ``I`` images are read as
  16-bit values (clipped to ``[0, 65535]``); float ``F`` images as Pillow converts them to ``L``
  (values clipped to ``[0, 255]``).
* Decompression bombs: the pixel count is read from the header and checked against
  ``max_pixels`` before any pixel data is decoded; over it, :class:`ImageTooLargeError`
  (the server answers 413).
"""
from __future__ import annotations

import io
import os
import pathlib
import warnings

import numpy as np

#: Default largest ``width * height`` decoded (8192 x 8192: a 48-megapixel photo passes). The
#: server uses its own, lower limit (``kcnn.export.serving.requests.MAX_IMAGE_PIXELS``).
DEFAULT_MAX_PIXELS = 8192 * 8192

_GRAY_MODES = {"1", "L", "LA", "La", "F"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageError(ValueError):
    """The data is not an image Pillow can read (unknown format, truncated, corrupt)."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed (a decompression-bomb guard)."""


def _check_size(image, max_pixels):
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    width, height = image.size
    if width * height > limit:
        raise ImageTooLargeError(f"image of {width}x{height} pixels exceeds the limit of "
                                 f"{limit} pixels")


def _is_gray_palette(image):
    """A palette of gray levels only (gray GIFs open as ``P`` with such an RGB palette)."""
    if image.palette is not None and image.palette.mode == "L":
        return True
    colours = np.asarray(image.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    return len(colours) > 0 and bool((colours == colours[:, :1]).all())


def to_array(image, *, max_pixels: int | None = None) -> np.ndarray:
    """A PIL image -> uint8 ``(H, W)`` (gray) or ``(H, W, 3)`` array, by the module's rules.

    Args:
        image: a ``PIL.Image.Image`` (opened lazily or already loaded).
        max_pixels: largest ``width * height`` accepted (default :data:`DEFAULT_MAX_PIXELS`).

    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels.
        ImageError: Pillow cannot decode the pixel data (truncated or corrupt file).
    """
    from PIL import Image, ImageOps

    _check_size(image, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's palette-transparency and bomb warnings
            image = ImageOps.exif_transpose(image)
            mode = image.mode
            if mode in _SIXTEEN_BIT_MODES:
                values = np.asarray(image).astype(np.int64).clip(0, 65535)
                return (values >> 8).astype(np.uint8)
            if mode in ("P", "PA"):
                if _is_gray_palette(image):
                    return np.asarray(image.convert("L"), dtype=np.uint8)
                image = image.convert("RGBA")
            if mode in _GRAY_MODES:
                return np.asarray(image.convert("L"), dtype=np.uint8)
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"),
                              dtype=np.uint8)
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(str(err)) from None
    except (OSError, ValueError, SyntaxError) as err:
        if isinstance(err, ImageError):
            raise
        raise ImageError(f"cannot decode the image: {err}") from None


def _open(source, max_pixels, what):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(source)
    except Image.DecompressionBombError as err:  # Pillow's own guard (far above max_pixels)
        raise ImageTooLargeError(f"cannot read {what}: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"cannot read {what} as an image: {err}") from None
    with image:
        try:
            return to_array(image, max_pixels=max_pixels)
        except ImageTooLargeError as err:
            raise ImageTooLargeError(f"cannot read {what}: {err}") from None
        except ImageError as err:
            raise ImageError(f"cannot read {what} as an image: {err}") from None


def decode(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, GIF, BMP, TIFF, WebP, ...) -> uint8 array (see
    :func:`to_array`).

    Raises:
        ImageError: empty, not an image, or not decodable.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes; received {type(data).__name__}")
    if not data:
        raise ImageError("cannot read an empty byte string as an image")
    return _open(io.BytesIO(data), max_pixels, "the data")


def read(path, *, max_pixels: int | None = None) -> np.ndarray:
    """An image file -> uint8 array (see :func:`to_array`).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ImageError: not an image, or not decodable.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; received {type(path).__name__}")
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    with open(path, "rb") as file:
        return _open(file, max_pixels, repr(str(path)))
