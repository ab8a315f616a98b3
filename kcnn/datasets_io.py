"""Reading and validating image-classification arrays from files.

The file formats ``kcnn.data`` reads itself (never by unpickling):

- ``.npz`` archives with ``x_train``, ``y_train``, ``x_test``, ``y_test`` and an
  optional ``class_names`` array of strings;
- IDX files, the format of MNIST and Fashion-MNIST
  (``train-images-idx3-ubyte[.gz]`` ...), see http://yann.lecun.com/exdb/mnist/.

Every problem is reported as a :class:`DataError` (a ``ValueError``) whose
message names the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import os
import zipfile

import numpy as np

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A data set could not be loaded: missing file, bad format or bad values."""


# --------------------------------------------------------------------------- arrays
def as_images(x, where: str) -> np.ndarray:
    """Return ``x`` as an ``(n, H, W, C)`` uint8 or float32-in-[0, 1] array.

    ``(n, H, W)`` gains a channel axis; integer images must lie in 0..255 and
    become uint8; float images must lie in [0, 1] and become float32. ``C`` must
    be 1 (grayscale) or 3 (RGB). ``where`` names the source in error messages.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise DataError(
            f"{where}: images must have shape (n, H, W) or (n, H, W, C); "
            f"received shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise DataError(f"{where}: contains no images (shape {x.shape})")
    if x.shape[-1] not in (1, 3):
        raise DataError(
            f"{where}: images must have 1 or 3 channels (channels last); "
            f"received shape {x.shape}"
        )
    if min(x.shape[1:3]) < 1:
        raise DataError(f"{where}: images have an empty side, shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{where}: integer pixel values must lie in 0..255; "
                f"received values in {lo}..{hi}"
            )
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where}: images contain NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{where}: float pixel values must lie in [0, 1] (store 0..255 "
                f"images as uint8); received values in [{lo:g}, {hi:g}]"
            )
        return x.astype(np.float32, copy=False)
    raise DataError(
        f"{where}: images must be an integer or float array; received dtype {x.dtype}"
    )


def as_labels(y, where: str) -> np.ndarray:
    """Return ``y`` as int64 class indices of shape ``(n,)``.

    Accepts integer labels of shape ``(n,)`` or ``(n, 1)`` (integral floats too)
    and one-hot rows of shape ``(n, K)`` with ``K > 1``.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[1] == 0 or not (
            np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_
        ):
            raise DataError(f"{where}: cannot read labels of shape {y.shape}, dtype {y.dtype}")
        yf = y.astype(np.float64)
        if not (np.all((yf == 0) | (yf == 1)) and np.all(yf.sum(axis=1) == 1)):
            raise DataError(
                f"{where}: 2-D labels must be one-hot rows (a single 1, zeros "
                f"elsewhere); received shape {y.shape} with other values"
            )
        return np.argmax(yf, axis=1).astype(np.int64)
    if y.ndim != 1:
        raise DataError(
            f"{where}: labels must have shape (n,), (n, 1) or one-hot (n, K); "
            f"received shape {y.shape}"
        )
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{where}: labels must be whole numbers; received non-integral values")
        return y.astype(np.int64)
    raise DataError(f"{where}: labels must be integers; received dtype {y.dtype}")


def check_pair(x: np.ndarray, y: np.ndarray, where: str) -> None:
    """Check that images and labels describe the same number of examples."""
    if len(x) != len(y):
        raise DataError(
            f"{where}: mismatched lengths: {len(x)} images but {len(y)} labels"
        )


def check_label_range(y: np.ndarray, num_classes: int, where: str) -> None:
    """Check that every label lies in ``0..num_classes-1``."""
    if y.size == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise DataError(f"{where}: labels must be >= 0; found label {lo}")
    if hi >= num_classes:
        raise DataError(
            f"{where}: label {hi} is out of range for {num_classes} classes "
            f"(labels must lie in 0..{num_classes - 1})"
        )


# --------------------------------------------------------------------------- npz
def read_npz(path: str) -> dict:
    """Read an ``.npz`` data set without unpickling.

    Returns a dict with ``x_train``, ``y_train``, ``x_test``, ``y_test`` as
    stored, plus ``class_names`` (a tuple of str) when the file has that array.
    """
    if not os.path.isfile(path):
        raise DataError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in NPZ_KEYS if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; an npz data set "
                    f"needs {', '.join(NPZ_KEYS)} (and optionally class_names); "
                    f"found {', '.join(sorted(keys)) or 'no arrays'}"
                )
            out = {k: f[k] for k in NPZ_KEYS}
            if "class_names" in keys:
                names = f["class_names"]
                if names.ndim != 1 or names.dtype.kind not in "US":
                    raise DataError(
                        f"{path}: class_names must be a 1-D array of strings; "
                        f"received shape {names.shape}, dtype {names.dtype}"
                    )
                out["class_names"] = tuple(
                    n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()
                )
    except DataError:
        raise
    except ValueError as e:  # object arrays refused by allow_pickle=False, bad headers
        raise DataError(f"{path}: cannot read npz file without pickle: {e}") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable npz file: {e}") from e
    return out


# --------------------------------------------------------------------------- IDX
def _read_bytes(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read file: {e}") from e


def read_idx(path: str, expect_magic: int | None = None) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (``.gz`` compressed or not).

    Validates the magic number (``expect_magic`` if given: 2051 for images,
    2049 for labels), the header length and that the data length equals the
    product of the declared dimensions.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    ndim = data[3]
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number {magic} (expected {expect_magic or '2049 or 2051'}; "
            "is this an IDX file of unsigned bytes?)"
        )
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: bad IDX magic number {magic} (expected {expect_magic})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header
    if actual != expected:
        raise DataError(
            f"{path}: header declares dimensions {dims} ({expected} bytes of data) "
            f"but the file holds {actual} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def find_idx_file(directory: str, key: str) -> str:
    """Path of the IDX file for ``key`` in ``directory`` (with or without .gz)."""
    for stem in IDX_FILES[key]:
        for name in (stem, stem + ".gz"):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    raise DataError(
        f"{directory}: missing IDX file {IDX_FILES[key][0]}[.gz] "
        "(an idx: directory needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz)"
    )


def read_idx_dir(directory: str) -> dict:
    """Read the four MNIST-style IDX files of ``directory``.

    Returns a dict with ``x_train``, ``y_train``, ``x_test``, ``y_test`` and,
    when ``directory/class_names.txt`` exists, ``class_names`` (one per line).
    """
    if not os.path.isdir(directory):
        raise DataError(f"idx directory not found: {directory}")
    out = {}
    for key in NPZ_KEYS:
        path = find_idx_file(directory, key)
        magic = IDX_IMAGES_MAGIC if key.startswith("x") else IDX_LABELS_MAGIC
        arr = read_idx(path, magic)
        out[key] = arr
        out[key + "_path"] = path
    for split in ("train", "test"):
        x, y = out[f"x_{split}"], out[f"y_{split}"]
        if len(x) != len(y):
            raise DataError(
                f"{out[f'x_{split}_path']}: mismatched lengths: {len(x)} images but "
                f"{len(y)} labels in {out[f'y_{split}_path']}"
            )
    names_path = os.path.join(directory, "class_names.txt")
    if os.path.isfile(names_path):
        with open(names_path, encoding="utf-8") as f:
            out["class_names"] = tuple(line.strip() for line in f if line.strip())
    return out
