"""``OnnxPredictor``: onnxruntime inference for a kcnn ONNX file, preprocessing included.

Only numpy, Pillow and onnxruntime are imported (no Keras), so predictors and servers start fast.
PIL images are turned into arrays by :func:`kcnn.export.images.to_array`, the decoder that
``kcnn-predict`` and ``kcnn-serve`` use too.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import onnxruntime as ort

from kcnn.export import images as image_decoder
from kcnn.export import metadata as meta
from kcnn.export.checks import check_positive

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_ORT_DEFAULT_LOG_SEVERITY = 2  # onnxruntime's default (warnings and above)


class InvalidModelError(ValueError):
    """The file is not an ONNX image classifier onnxruntime can load (truncated, not ONNX, …)."""


def select_providers(providers=None):
    """Validate an explicit provider list against ``ort.get_available_providers()``.

    Returns the list unchanged, or ``None`` when ``providers`` is ``None`` (automatic choice:
    CUDA when it loads, else CPU — see :class:`OnnxPredictor`).
    """
    if providers is None:
        return None
    if isinstance(providers, str):
        providers = [providers]
    providers = list(providers)
    available = ort.get_available_providers()
    unknown = [p for p in providers if p not in available]
    if not providers or unknown:
        raise ValueError(
            f"providers must be a non-empty list of available onnxruntime providers "
            f"{available}; received {providers!r}."
        )
    return providers


def _make_session(path, providers, *options):
    """Create an ``InferenceSession`` (module-level so tests can substitute it); ``options``:
    an optional ``SessionOptions``."""
    return ort.InferenceSession(str(path), *options, providers=providers)


def _session_options(config):
    """``SessionOptions`` carrying ``config``'s entries, as ``_make_session``'s extra arguments
    (none for no config)."""
    if not config:
        return ()
    options = ort.SessionOptions()
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return (options,)


def _check_session_config(config):
    if config is None:
        return {}
    if not isinstance(config, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
        raise TypeError(f"session_config must be a dict of str to str (onnxruntime session "
                        f"config entries) or None; received {config!r}.")
    return dict(config)


def _open_session(path, providers, session_config=None):
    """Session on the requested providers, or CUDA-if-it-loads-else-CPU when ``None``."""
    options = _session_options(session_config)
    if providers is not None:
        return _make_session(path, providers, *options)
    if CUDA in ort.get_available_providers():
        # A GPU build falls back to CPU (logging errors) when CUDA libraries or devices are
        # missing; probe quietly and keep the session only if CUDA really is active.
        ort.set_default_logger_severity(4)
        try:
            session = _make_session(path, [CUDA, CPU], *options)
            if session.get_providers()[:1] == [CUDA]:
                return session
        except Exception:  # noqa: BLE001 - any CUDA failure means: use the CPU
            pass
        finally:
            ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)
    return _make_session(path, [CPU], *options)


def fit_image(pil, size, fit, resample):
    """``pil`` resized to ``size`` = (width, height) by ``fit`` (as ``kcnn.data.resize``):

    ``"stretch"`` ignores the aspect ratio; ``"crop"`` cuts the largest centred box of the
    target's aspect ratio first; ``"pad"`` fits the image inside and centres it on black.
    """
    width, height = size
    if fit == "crop":
        w, h = pil.size
        crop_h = min(h, max(1, round(w * height / width)))
        crop_w = min(w, max(1, round(h * width / height)))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        pil = pil.crop((left, top, left + crop_w, top + crop_h))
    elif fit == "pad":
        from PIL import Image

        w, h = pil.size
        scale = min(width / w, height / h)
        inner = (max(1, int(w * scale)), max(1, int(h * scale)))
        canvas = Image.new(pil.mode, (width, height))
        canvas.paste(pil.resize(inner, resample), ((width - inner[0]) // 2,
                                                   (height - inner[1]) // 2))
        return canvas
    return pil.resize((width, height), resample)


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


_RESAMPLE = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC",
             "lanczos": "LANCZOS", "box": "BOX"}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Result of :meth:`OnnxPredictor.predict` for ``n`` images and ``k = top_k``.

    Attributes:
        probabilities: ``(n, classes)`` float32, rows sum to 1.
        indices: ``(n, k)`` class indices, best first.
        scores: ``(n, k)`` probabilities of those classes.
        labels: ``n`` lists of ``k`` class names.
    """

    probabilities: np.ndarray
    indices: np.ndarray
    scores: np.ndarray
    labels: list

    def __len__(self):
        return len(self.labels)

    @property
    def top1(self):
        """The best label of every image."""
        return [row[0] for row in self.labels]

    def to_list(self):
        """JSON-ready ``[[{"label", "index", "score"}, …top k], …per image]``."""
        return [
            [{"label": label, "index": int(i), "score": float(s)}
             for label, i, s in zip(labels, idx, sc)]
            for labels, idx, sc in zip(self.labels, self.indices, self.scores)
        ]


class OnnxPredictor:
    """Run an ONNX image classifier (as written by :func:`kcnn.export.export_onnx`).

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers, or ``None`` to use
            ``CUDAExecutionProvider`` when onnxruntime offers it and a session with it loads,
            else ``CPUExecutionProvider``. :attr:`provider` tells which one runs.
        batch_size: largest batch sent to onnxruntime at once (bigger inputs are split).
        session_config: onnxruntime session config entries (``{key: value}`` strings, as
            ``SessionOptions.add_session_config_entry`` takes them), e.g.
            ``{"session.intra_op.allow_spinning": "0"}``, which ``kcnn-serve`` sets.

    Labels and preprocessing come from the file's metadata; a plain ONNX file with one
    ``[batch, H, W, C]`` float input also works (labels ``"0"``…, uint8 / 255 scaling).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InvalidModelError: the file is truncated, not ONNX, or not a single-image-input model.
    """

    def __init__(self, path, providers=None, *, batch_size=64, session_config=None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike; received {type(path).__name__}.")
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ONNX model file not found: {str(self.path)!r}")
        if not self.path.is_file():
            raise InvalidModelError(f"{str(self.path)!r} is not a file (expected an .onnx file).")
        self.batch_size = check_positive("batch_size", batch_size, integer=True)
        providers = select_providers(providers)
        session_config = _check_session_config(session_config)
        try:
            self._session = _open_session(self.path, providers, session_config)
        except Exception as err:  # onnxruntime raises its own (non-ValueError) exception types
            raise InvalidModelError(
                f"cannot load {str(self.path)!r} as an ONNX model (truncated or not ONNX?): "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
        self._read_signature()
        self._read_metadata()

    # --- model description -------------------------------------------------------------
    def _read_signature(self):
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise InvalidModelError(
                f"{str(self.path)!r} must have one input and at least one output; it has "
                f"inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}."
            )
        shape = inputs[0].shape
        if inputs[0].type != "tensor(float)" or len(shape) != 4 or not all(
                isinstance(d, int) and d > 0 for d in shape[1:]):
            raise InvalidModelError(
                f"{str(self.path)!r} input {inputs[0].name!r} must be float32 "
                f"[batch, height, width, channels] with fixed height/width/channels; "
                f"it is {inputs[0].type} {shape}."
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.input_shape = tuple(int(d) for d in shape[1:])
        out_shape = outputs[0].shape
        self._num_outputs = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None

    def _read_metadata(self):
        props = self._session.get_modelmeta().custom_metadata_map
        try:
            self.metadata = meta.decode(props)
        except ValueError as err:
            raise InvalidModelError(f"{str(self.path)!r}: {err}") from None
        height, width, channels = self.input_shape
        try:
            self.preprocessing = meta.normalize_preprocessing(
                self.metadata.get(meta.PREPROCESSING), height, width, channels)
            self.labels = meta.normalize_labels(self.metadata.get(meta.LABELS),
                                                self._num_outputs)
        except (TypeError, ValueError) as err:
            raise InvalidModelError(f"{str(self.path)!r} has inconsistent metadata: {err}") from None
        if self._num_outputs is None and self.metadata.get(meta.LABELS) is None:
            raise InvalidModelError(
                f"{str(self.path)!r} has no fixed output width and no kcnn.labels metadata."
            )
        self.num_classes = len(self.labels)
        self.output_kind = self.metadata.get(meta.OUTPUT, "logits")

    @property
    def provider(self):
        """The execution provider actually running the model (e.g. ``"CPUExecutionProvider"``)."""
        return self._session.get_providers()[0]

    def __repr__(self):
        return (f"OnnxPredictor({str(self.path)!r}, input={self.input_shape}, "
                f"classes={self.num_classes}, provider={self.provider!r})")

    def _expected(self):
        h, w, c = self.input_shape
        return (f"expected float32 (N, {h}, {w}, {c}) / ({h}, {w}, {c}) already preprocessed, "
                f"or uint8 images (H, W), (H, W, C) or (N, H, W[, C]) with C in 1, 3, 4")

    # --- preprocessing -----------------------------------------------------------------
    def preprocess(self, images):
        """Turn images into the model's float32 ``(N, H, W, C)`` input batch.

        Accepts a float array already preprocessed (``(N, H, W, C)`` or ``(H, W, C)``, exact
        size), uint8 arrays (``(H, W)``, ``(H, W, C)`` with C in 1/3/4, or a batch
        ``(N, H, W)`` / ``(N, H, W, C)``) of any size, PIL images (decoded by
        :func:`kcnn.export.images.to_array`: EXIF orientation, 16-bit, palette, CMYK, alpha), or
        a list of those. uint8 images are resized, converted to grayscale/RGB and scaled as the
        metadata says.

        Raises:
            ValueError: wrong shape/dtype, non-finite floats; :class:`kcnn.export.images.ImageError`
                (a ValueError) for undecodable or oversized PIL images.
            TypeError: not an array, PIL image or list.
        """
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError(f"images is an empty list; {self._expected()}.")
            return np.concatenate([self.preprocess(image) for image in images])
        if _is_pil(images):
            return self._from_uint8(image_decoder.to_array(images))[None]
        if not isinstance(images, np.ndarray):
            raise TypeError(
                f"images must be a numpy array, a PIL image or a list of those; received "
                f"{type(images).__name__}."
            )
        if images.dtype.kind == "f":
            return self._check_float(images)
        if images.dtype != np.uint8:
            raise ValueError(f"images has dtype {images.dtype}; {self._expected()}.")
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)):
            return self._from_uint8(images)[None]
        if images.ndim == 3:
            batch = images[..., None]
        elif images.ndim == 4 and images.shape[-1] in (1, 3, 4):
            batch = images
        else:
            raise ValueError(f"images has shape {images.shape} (uint8); {self._expected()}.")
        if len(batch) == 0:
            raise ValueError(f"images is an empty batch {images.shape}; {self._expected()}.")
        return np.stack([self._from_uint8(image) for image in batch])

    def _check_float(self, batch):
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape or len(batch) == 0:
            raise ValueError(
                f"images has shape {batch.shape} ({batch.dtype}); {self._expected()}."
            )
        if not np.all(np.isfinite(batch)):
            raise ValueError("images contains NaN or infinite values.")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _from_uint8(self, image):
        """One uint8 (H, W) / (H, W, C) image -> float32 (H', W', C') per the metadata."""
        from PIL import Image

        height, width, channels = self.input_shape
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
            raise ValueError(f"image has shape {image.shape}; {self._expected()}.")
        if image.shape[:2] == (height, width) and (
                (channels == 1 and image.ndim == 2)
                or (channels == 3 and image.ndim == 3 and image.shape[-1] == 3)):
            # Already the model's size and layout (the usual served image): no PIL round trip.
            array = image.reshape(height, width, channels)
        elif channels in (1, 3):
            if image.ndim == 3:
                pil = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
            else:
                pil = Image.fromarray(np.ascontiguousarray(image), "L")
            pil = pil.convert("L" if channels == 1 else "RGB")
            if pil.size != (width, height):
                pil = fit_image(pil, (width, height), self.preprocessing.get("fit", "stretch"),
                                _resample(self.preprocessing["resize"]))
            array = np.asarray(pil, dtype=np.float32).reshape(height, width, channels)
        else:  # unusual channel counts: no colour conversion, resize channel by channel
            planes = image[..., None] if image.ndim == 2 else image
            if planes.shape[-1] != channels:
                raise ValueError(
                    f"image has {planes.shape[-1]} channel(s); the model takes {channels}.")
            array = np.stack([
                np.asarray(fit_image(Image.fromarray(np.ascontiguousarray(planes[..., c]), "L"),
                                     (width, height), self.preprocessing.get("fit", "stretch"),
                                     _resample(self.preprocessing["resize"])), dtype=np.float32)
                for c in range(channels)], axis=-1)
        pre = self.preprocessing
        array = array.astype(np.float32, copy=False) * np.float32(pre["scale"])
        return ((array - np.float32(pre["mean"])) / np.float32(pre["std"])).astype(np.float32)

    # --- inference ---------------------------------------------------------------------
    def run(self, batch):
        """Raw model output (``logits``) for a preprocessed float ``(N, H, W, C)`` batch."""
        if not isinstance(batch, np.ndarray) or batch.dtype.kind != "f":
            kind = batch.dtype if isinstance(batch, np.ndarray) else type(batch).__name__
            raise ValueError(
                f"run() takes a preprocessed float32 array (N, {', '.join(map(str, self.input_shape))}); "
                f"received {kind}.")
        batch = self._check_float(batch)
        outputs = [
            self._session.run([self.output_name], {self.input_name: batch[i:i + self.batch_size]})[0]
            for i in range(0, len(batch), self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def predict(self, images, top_k=1):
        """Class probabilities and the ``top_k`` labels/scores for ``images``.

        ``images`` is anything :meth:`preprocess` accepts. Returns a :class:`Prediction`.
        """
        self._check_top_k(top_k)
        return self.postprocess(self.run(self.preprocess(images)), top_k=top_k)

    def _check_top_k(self, top_k):
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) \
                or not 1 <= top_k <= self.num_classes:
            raise ValueError(
                f"top_k must be an integer in [1, {self.num_classes}]; received {top_k!r}.")

    def postprocess(self, outputs, top_k=1):
        """Model outputs from :meth:`run` -> :class:`Prediction` (softmax unless the model
        already outputs probabilities, then the ``top_k`` best classes)."""
        self._check_top_k(top_k)
        outputs = np.asarray(outputs, dtype=np.float32)
        if outputs.ndim != 2 or outputs.shape[-1] != self.num_classes:
            raise InvalidModelError(
                f"{str(self.path)!r} produced outputs of shape {outputs.shape} for "
                f"{self.num_classes} labels.")
        probabilities = outputs if self.output_kind == "probabilities" else _softmax(outputs)
        probabilities = probabilities.astype(np.float32)
        indices = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k]
        scores = np.take_along_axis(probabilities, indices, axis=-1)
        labels = [[self.labels[i] for i in row] for row in indices]
        return Prediction(probabilities, indices, scores, labels)


def _resample(name):
    from PIL import Image

    return getattr(Image.Resampling, _RESAMPLE[name])


def _is_pil(obj):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)

