"""Image-classification data for kcnn: loading, validation and tf.data pipelines.

``load(spec)`` returns an :class:`ImageData` (numpy arrays plus class names)
from one of these sources::

    digits            scikit-learn's 1,797 bundled 8x8 handwritten digits (no download)
    mnist             keras.datasets.mnist (downloaded and cached by Keras)
    fashion_mnist     keras.datasets.fashion_mnist
    cifar10           keras.datasets.cifar10
    npz:PATH          arrays x_train, y_train, x_test, y_test [, class_names]
    idx:DIR           MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...)
    folder:DIR        one sub-folder of images per class (DIR/train + DIR/test, or split)
    synthetic[:N[:HxW[xC]]]  deterministic generated images (smoke tests, benchmarks)

``make_dataset(x, y, batch_size=...)`` turns arrays into a batched ``tf.data``
pipeline of float32 images in [0, 1] (resized and channel-converted on the fly)
that ``model.fit`` accepts under every Keras backend.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from kcnn.datasets_io import (
    DataError,
    as_images,
    as_labels,
    check_label_range,
    check_pair,
    read_idx_dir,
    read_npz,
)

__all__ = [
    "DataError",
    "ImageData",
    "available",
    "keras_cache_dir",
    "load",
    "make_dataset",
    "split_validation",
    "synthetic",
]

DIGIT_NAMES = tuple(str(i) for i in range(10))
FASHION_MNIST_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

_SPECS = (
    "digits", "mnist", "fashion_mnist", "cifar10",
    "npz:PATH", "idx:DIR", "folder:DIR", "synthetic[:N[:HxW[xC]]]",
)


# --------------------------------------------------------------------------- container
@dataclass(frozen=True, eq=False)
class ImageData:
    """A train/test image-classification data set held in numpy arrays.

    Attributes:
        name: where the data came from (the spec it was loaded with).
        x_train, x_test: images ``(n, H, W, C)``, uint8 0..255 as stored, or
            float32 in [0, 1] for sources that store floats.
        y_train, y_test: int64 class indices ``(n,)``.
        class_names: one name per class; label ``i`` is ``class_names[i]``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple

    def __post_init__(self):
        names = tuple(str(n) for n in self.class_names)
        object.__setattr__(self, "class_names", names)
        if not names:
            raise DataError(f"{self.name}: class_names is empty")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            where = f"{self.name} ({split})"
            if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype not in (np.uint8, np.float32):
                raise DataError(
                    f"{where}: x_{split} must be a uint8 or float32 array (n, H, W, C); "
                    f"received {type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}"
                )
            if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
                raise DataError(
                    f"{where}: y_{split} must be an int64 array (n,); received "
                    f"{type(y).__name__} {getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}"
                )
            check_pair(x, y, where)
            check_label_range(y, len(names), where)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.name}: images of inconsistent shape: train images are "
                f"{self.x_train.shape[1:]}, test images are {self.x_test.shape[1:]}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """Shape of one image, ``(H, W, C)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return len(self.x_train)

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return len(self.x_test)

    def __repr__(self):
        return (
            f"ImageData(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"image_shape={self.image_shape}, dtype={self.x_train.dtype}, "
            f"num_classes={self.num_classes})"
        )


def _image_data(name, x_train, y_train, x_test, y_test, class_names=None, where=None):
    """Validate raw arrays from ``where`` and build an :class:`ImageData`."""
    where = where or name
    xtr = as_images(x_train, f"{where}: x_train")
    xte = as_images(x_test, f"{where}: x_test")
    ytr = as_labels(y_train, f"{where}: y_train")
    yte = as_labels(y_test, f"{where}: y_test")
    check_pair(xtr, ytr, f"{where}: x_train/y_train")
    check_pair(xte, yte, f"{where}: x_test/y_test")
    if xtr.shape[1:] != xte.shape[1:]:
        raise DataError(
            f"{where}: images of inconsistent shape: x_train images are "
            f"{xtr.shape[1:]}, x_test images are {xte.shape[1:]}"
        )
    if xtr.dtype != xte.dtype:  # one uint8, one float: bring both to float [0, 1]
        xtr, xte = (a.astype(np.float32) / 255 if a.dtype == np.uint8 else a for a in (xtr, xte))
    for y, key in ((ytr, "y_train"), (yte, "y_test")):
        if y.min() < 0:
            raise DataError(f"{where}: {key}: labels must be >= 0; found label {int(y.min())}")
    if class_names is None:
        class_names = tuple(str(i) for i in range(int(max(ytr.max(), yte.max())) + 1))
    for y, key in ((ytr, "y_train"), (yte, "y_test")):
        check_label_range(y, len(class_names), f"{where}: {key}")
    return ImageData(name, xtr, ytr, xte, yte, tuple(class_names))


# --------------------------------------------------------------------------- specs
def available() -> list:
    """The data-set specs :func:`load` accepts (``PATH``/``DIR``/``N`` are placeholders)."""
    return list(_SPECS)


def load(spec: str, *, seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """Load a data set by spec; see the module docstring and :func:`available`.

    Args:
        spec: ``"digits"``, ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``,
            ``"npz:PATH"``, ``"idx:DIR"``, ``"folder:DIR"`` or
            ``"synthetic[:N[:HxW[xC]]]"``.
        seed: seeds the train/test split of sources without one (digits,
            folder without train/test sub-folders, synthetic) and the
            synthetic generator.
        test_fraction: share of examples held out for testing where the
            source has no split of its own.

    Raises:
        DataError (a ValueError): unknown spec, missing file, or bad data;
        the message names the file and the problem.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"spec must be a non-empty string, one of {', '.join(_SPECS)}; received {spec!r}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be a number in (0, 1); received {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an int; received {seed!r}")
    seed = int(seed)
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if kind in ("npz", "idx", "folder"):
        if not arg.strip():
            raise DataError(f"spec {spec!r} needs a path: '{kind}:{'PATH' if kind == 'npz' else 'DIR'}'")
        path = os.path.expanduser(arg.strip())
        if kind == "npz":
            return _load_npz(path)
        if kind == "idx":
            return _load_idx(path)
        return _load_folder(path, seed=seed, test_fraction=test_fraction)
    if kind == "synthetic":
        return _parse_synthetic(spec, arg, seed=seed, test_fraction=test_fraction)
    if arg:
        raise DataError(f"unknown data set spec {spec!r}; valid specs: {', '.join(_SPECS)}")
    if kind == "digits":
        return _load_digits(seed=seed, test_fraction=test_fraction)
    if kind in _KERAS_DATASETS:
        return _load_keras(kind)
    raise DataError(f"unknown data set spec {spec!r}; valid specs: {', '.join(_SPECS)}")


# --------------------------------------------------------------------------- digits
def _load_digits(*, seed, test_fraction):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 0..16 intensities -> 0..255 so digits look like every other uint8 source.
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return ImageData("digits", xtr, ytr, xte, yte, DIGIT_NAMES)


# --------------------------------------------------------------------------- keras.datasets
_KERAS_DATASETS = {
    # name: (files Keras looks for under its datasets cache, offline alternative)
    "mnist": (
        ("mnist.npz",),
        "or pass 'npz:PATH' (arrays x_train, y_train, x_test, y_test) or 'idx:DIR' (the IDX files)",
    ),
    "fashion_mnist": (
        tuple(
            os.path.join("fashion-mnist", f)
            for f in ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                      "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
        ),
        "or pass 'idx:DIR' (a folder holding those IDX files) or 'npz:PATH'",
    ),
    "cifar10": (
        ("cifar-10-batches-py-target_archive",),
        "(the file cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "saved under that name), or pass 'npz:PATH' (arrays x_train, y_train, x_test, y_test)",
    ),
}
_KERAS_NAMES = {"mnist": DIGIT_NAMES, "fashion_mnist": FASHION_MNIST_NAMES, "cifar10": CIFAR10_NAMES}


def keras_cache_dir() -> str:
    """The folder ``keras.utils.get_file`` caches data sets in.

    ``$KERAS_HOME/datasets`` (as read when Keras was imported), else
    ``~/.keras/datasets``; Keras falls back to ``/tmp/.keras/datasets`` when
    that folder is not writable.
    """
    try:
        from keras.src.backend.config import keras_home

        base = keras_home()
    except ImportError:  # private accessor moved: mirror its logic
        base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    base = os.path.expanduser(base)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(base, "datasets")


def _load_keras(name):
    import keras

    loader = getattr(keras.datasets, name).load_data
    try:
        (xtr, ytr), (xte, yte) = loader()
    except Exception as e:  # offline download, corrupt cache, ...: one clear message
        files, alternative = _KERAS_DATASETS[name]
        cache = keras_cache_dir()
        paths = ", ".join(os.path.join(cache, f) for f in files)
        raise DataError(
            f"could not load {name!r} with keras.datasets.{name}.load_data() "
            f"({type(e).__name__}: {e}). Keras downloads it on first use and then reads "
            f"its cache; without network access place {paths} there (set KERAS_HOME to "
            f"use another cache folder), {alternative}"
        ) from e
    if name == "cifar10" and xtr.ndim == 4 and xtr.shape[1] == 3 and xtr.shape[-1] != 3:
        # Keras returns channels-first arrays when image_data_format() says so.
        xtr, xte = xtr.transpose(0, 2, 3, 1), xte.transpose(0, 2, 3, 1)
    return _image_data(name, xtr, ytr, xte, yte, _KERAS_NAMES[name],
                       where=f"keras.datasets.{name}")


# --------------------------------------------------------------------------- files
def _load_npz(path):
    arrays = read_npz(path)
    return _image_data(
        f"npz:{path}", arrays["x_train"], arrays["y_train"], arrays["x_test"],
        arrays["y_test"], arrays.get("class_names"), where=path,
    )


def _load_idx(directory):
    arrays = read_idx_dir(directory)
    return _image_data(
        f"idx:{directory}", arrays["x_train"], arrays["y_train"], arrays["x_test"],
        arrays["y_test"], arrays.get("class_names"), where=directory,
    )


_IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras's loader reads


def _scan_class_folders(directory):
    """Check a class-per-sub-folder tree; return (class names, (H, W), color_mode, count)."""
    from PIL import Image

    if not os.path.isdir(directory):
        raise DataError(f"image folder not found: {directory}")
    classes = sorted(
        d for d in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")  # as Keras
    )
    if not classes:
        raise DataError(
            f"{directory}: empty folder: no class sub-folders (folder:DIR needs one "
            f"sub-folder of images per class)"
        )
    first = None
    grayscale = True
    count = 0
    for c in classes:
        for root, _, files in os.walk(os.path.join(directory, c)):
            for f in sorted(files):
                if not f.lower().endswith(_IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(root, f)
                try:
                    with Image.open(path) as im:
                        size, mode = im.size, im.mode
                except (OSError, ValueError) as e:
                    raise DataError(f"{path}: not a readable image: {e}") from e
                if first is None:
                    first = (path, size)
                elif size != first[1]:
                    raise DataError(
                        f"{path}: images of inconsistent shape: {size[0]}x{size[1]} "
                        f"(width x height) but {first[0]} is {first[1][0]}x{first[1][1]}"
                    )
                grayscale &= mode in ("1", "L", "I", "I;16", "F")
                count += 1
    if first is None:
        raise DataError(
            f"{directory}: empty folder: no image files ({', '.join(_IMAGE_EXTENSIONS)}) "
            f"in its class sub-folders {', '.join(classes)}"
        )
    width, height = first[1]
    return tuple(classes), (height, width), "grayscale" if grayscale else "rgb", count


def _to_numpy(ds):
    """Concatenate a batched (images, labels) tf.data.Dataset into uint8/int64 arrays."""
    xs, ys = [], []
    for xb, yb in ds.as_numpy_iterator():
        xs.append(np.clip(np.round(xb), 0, 255).astype(np.uint8))
        ys.append(yb.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _load_folder(directory, *, seed, test_fraction):
    import keras

    train_dir, test_dir = os.path.join(directory, "train"), os.path.join(directory, "test")
    has_split = os.path.isdir(train_dir) and os.path.isdir(test_dir)
    common = dict(labels="inferred", label_mode="int", batch_size=256, verbose=False)
    if has_split:
        classes, size, mode, _ = _scan_class_folders(train_dir)
        test_classes, test_size, test_mode, _ = _scan_class_folders(test_dir)
        if test_classes != classes:
            raise DataError(
                f"{directory}: train/ and test/ have different class sub-folders: "
                f"{', '.join(classes)} vs {', '.join(test_classes)}"
            )
        if test_size != size:
            raise DataError(
                f"{test_dir}: images of inconsistent shape: {test_size} (H, W) but "
                f"the images in {train_dir} are {size}"
            )
        mode = "grayscale" if mode == test_mode == "grayscale" else "rgb"
        kw = dict(common, class_names=list(classes), image_size=size, color_mode=mode, shuffle=False)
        train = keras.utils.image_dataset_from_directory(train_dir, **kw)
        test = keras.utils.image_dataset_from_directory(test_dir, **kw)
    else:
        classes, size, mode, count = _scan_class_folders(directory)
        n_test = int(count * test_fraction)
        if n_test < 1 or n_test >= count:
            raise DataError(
                f"{directory}: {count} image(s) are too few to hold out test_fraction="
                f"{test_fraction} for testing (add images or DIR/train and DIR/test sub-folders)"
            )
        # Keras shuffles the file list with `seed` before taking the validation subset.
        train, test = keras.utils.image_dataset_from_directory(
            directory, **common, class_names=list(classes), image_size=size,
            color_mode=mode, shuffle=True, seed=seed,
            validation_split=test_fraction, subset="both",
        )
    xtr, ytr = _to_numpy(train)
    xte, yte = _to_numpy(test)
    return _image_data(f"folder:{directory}", xtr, ytr, xte, yte, classes, where=directory)


# --------------------------------------------------------------------------- synthetic
def _parse_synthetic(spec, arg, *, seed, test_fraction):
    parts = [p.strip() for p in arg.split(":")] if arg else []
    bad = DataError(
        f"bad synthetic spec {spec!r}: expected 'synthetic', 'synthetic:N' or "
        f"'synthetic:N:HxW[xC]' (e.g. 'synthetic:2000:28x28x1', C 1 or 3)"
    )
    if len(parts) > 2:
        raise bad
    try:
        n = int(parts[0]) if parts and parts[0] else 2000
        size = [int(v) for v in parts[1].lower().split("x")] if len(parts) > 1 else [28, 28]
    except ValueError:
        raise bad from None
    if len(size) == 2:
        size.append(1)
    if len(size) != 3 or min(size[:2]) < 4 or size[2] not in (1, 3) or n < 2:
        raise bad
    return synthetic(n, image_shape=tuple(size), seed=seed, test_fraction=test_fraction)


def synthetic(num_examples: int = 2000, *, image_shape=(28, 28, 1), num_classes: int = 10,
              seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """Deterministic generated images whose class is learnable.

    Class ``k`` is a sinusoidal grating at angle ``180 * k / num_classes``
    degrees with a random phase and contrast per image, plus Gaussian noise, so
    a CNN must learn orientation filters (not one pixel). Same arguments,
    same arrays.
    """
    h, w, c = image_shape
    rng = np.random.default_rng(seed)
    n = int(num_examples)
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    theta = np.pi * y / num_classes
    freq = 2 * np.pi * 3.0 / min(h, w)  # three periods across the image
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, n)
    proj = (np.cos(theta)[:, None, None] * cols + np.sin(theta)[:, None, None] * rows) * freq
    contrast = rng.uniform(0.15, 0.4, n)[:, None, None]
    img = 0.5 + contrast * np.sin(proj + phase[:, None, None])
    img = img[..., None] * rng.uniform(0.8, 1.0, (n, 1, 1, c))  # per-channel tint
    img = img + rng.normal(0.0, 0.2, img.shape)
    x = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    n_test = max(1, int(round(n * test_fraction)))
    spec = f"synthetic:{n}:{h}x{w}x{c}"
    return ImageData(spec, x[n_test:], y[n_test:], x[:n_test], y[:n_test],
                     tuple(str(k) for k in range(num_classes)))


# --------------------------------------------------------------------------- splits
def split_validation(data: ImageData, fraction: float = 0.1, seed: int = 0):
    """Hold out ``fraction`` of ``data``'s training examples for validation.

    Returns ``(train, val)``: ``train`` keeps the remaining training examples
    and the original test set; ``val`` holds the held-out examples in both its
    train and test fields (so ``val.x_test, val.y_test`` is the validation
    set). Stratified by class when every class has enough examples.
    """
    from sklearn.model_selection import train_test_split

    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData; received {type(data).__name__}")
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be a number in (0, 1); received {fraction!r}")
    n = data.num_train
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"fraction={fraction} of {n} training examples leaves an empty train or "
            f"validation set"
        )
    idx = np.arange(n)
    try:
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=data.y_train)
    except ValueError:  # a class too small to stratify
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed)
    tr, va = np.sort(tr), np.sort(va)
    train = ImageData(data.name, data.x_train[tr], data.y_train[tr],
                      data.x_test, data.y_test, data.class_names)
    xv, yv = data.x_train[va], data.y_train[va]
    val = ImageData(f"{data.name} (validation)", xv, yv, xv, yv, data.class_names)
    return train, val


# --------------------------------------------------------------------------- tf.data
def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    try:
        h, w = (int(v) for v in image_size)
        ok = h > 0 and w > 0 and all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"image_size must be None, a positive int or a pair (height, width) of "
            f"positive ints; received {image_size!r}"
        )
    return h, w


def make_dataset(x, y, *, batch_size, image_size=None, channels=None, shuffle=False,
                 seed=0, drop_remainder=False):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` for ``model.fit``.

    Images come out float32 NHWC in [0, 1] (uint8 divided by 255, floats as
    they are), converted to ``channels`` (1 -> 3 by repetition, 3 -> 1 by
    luminance) and resized to ``image_size`` with bilinear interpolation on
    the fly, one batch at a time; labels come out int64. With ``shuffle`` the
    order is reshuffled every epoch from ``seed`` (same seed, same orders).

    Args:
        x: images ``(n, H, W)`` or ``(n, H, W, C)``, uint8 or float in [0, 1].
        y: integer (or one-hot) labels, ``n`` of them.
        batch_size: examples per batch (positive int).
        image_size: ``None`` (keep), an int or ``(height, width)``.
        channels: ``None`` (keep), 1 or 3.
        shuffle: reshuffle the examples every epoch.
        seed: shuffle seed.
        drop_remainder: drop the last, smaller batch.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; received {batch_size!r}")
    size = _check_image_size(image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be None, 1 or 3; received {channels!r}")
    x = as_images(x, "make_dataset: x")
    y = as_labels(y, "make_dataset: y")
    check_pair(x, y, "make_dataset: x/y")
    n, in_h, in_w, in_c = x.shape
    scale = x.dtype == np.uint8

    with tf.device("/CPU:0"):
        images = tf.constant(x)
        labels = tf.constant(y)

    def batch_of(indices):
        # Vectorized per batch: gather, scale, convert channels, resize.
        xb = tf.cast(tf.gather(images, indices), tf.float32)
        if scale:
            xb = xb / 255.0
        if channels == 1 and in_c == 3:
            xb = tf.image.rgb_to_grayscale(xb)  # before resizing: less to resize
        if size is not None and size != (in_h, in_w):
            xb = tf.image.resize(xb, size, method="bilinear")
        if channels == 3 and in_c == 1:
            xb = tf.image.grayscale_to_rgb(xb)  # after resizing: less to resize
        return xb, tf.gather(labels, indices)

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
