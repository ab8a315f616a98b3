"""Validation of image-classification arrays: shapes, dtypes, value and label ranges.

Every problem is reported as a :class:`DataError` (a ``ValueError``) whose message names the source
(``where``) and what is wrong with it.
"""
from __future__ import annotations

import numpy as np


class DataError(ValueError):
    """A data set could not be loaded: missing file, bad format or bad values."""


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


# Labels above this are refused before a class list is built from them: a stray label of 10**9
# would otherwise allocate a billion class names. ImageNet-21k, the largest common set, has 21,841.
MAX_CLASSES = 100_000


def check_label_count(y: np.ndarray, where: str) -> int:
    """The number of classes ``0..max(y)`` implies; DataError beyond :data:`MAX_CLASSES`."""
    if y.size == 0:
        return 0
    try:
        check_label_range(y, MAX_CLASSES, where)
    except DataError as e:
        if "out of range" not in str(e):
            raise
        raise DataError(
            f"{where}: label {int(y.max())} is too large: kcnn supports at most {MAX_CLASSES:,} "
            f"classes (labels 0..{MAX_CLASSES - 1}); is this column really class indices?") from None
    return int(y.max()) + 1


def check_class_names(names, where: str) -> tuple:
    """``names`` as a tuple of distinct, non-empty strings, else DataError."""
    names = tuple(str(n) for n in names)
    if not names:
        raise DataError(f"{where}: class_names is empty")
    if len(names) > MAX_CLASSES:
        raise DataError(f"{where}: {len(names):,} class names; at most {MAX_CLASSES:,} are supported")
    seen, duplicates = set(), []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise DataError(f"{where}: class_names must be distinct; repeated: "
                        + ", ".join(repr(d) for d in duplicates[:5]))
    if any(not name.strip() for name in names):
        raise DataError(f"{where}: class_names must not be empty strings")
    return names


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


def validation_indices(y_train, fraction, seed):
    """``(train, validation)`` sorted index arrays holding out ``fraction`` of ``y_train``'s
    examples, stratified by class where every class can spare one; seeded.

    Raises ``ValueError`` when either part would be empty.
    """
    from sklearn.model_selection import train_test_split

    n = len(y_train)
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"fraction={fraction} of {n} training examples leaves an empty train or "
                         f"validation set")
    idx = np.arange(n)
    try:
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=y_train)
    except ValueError:  # a class too small to stratify
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed)
    return np.sort(tr), np.sort(va)
