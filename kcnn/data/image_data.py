"""The :class:`ImageData` container and the one validated way to build it from raw arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcnn.data.arrays import (DataError, as_images, as_labels, check_class_names, check_label_count,
                              check_label_range, check_pair)


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
        names = check_class_names(self.class_names, self.name)
        object.__setattr__(self, "class_names", names)
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


def from_arrays(name, x_train, y_train, x_test, y_test, class_names=None, where=None):
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
    labels = ((ytr, "y_train"), (yte, "y_test"))
    if class_names is None:  # classes 0..max label, once the labels are known to be sane
        counts = [check_label_count(y, f"{where}: {key}") for y, key in labels]
        class_names = tuple(str(i) for i in range(max(counts)))
    class_names = check_class_names(class_names, where)
    for y, key in labels:
        check_label_range(y, len(class_names), f"{where}: {key}")
    return ImageData(name, xtr, ytr, xte, yte, tuple(class_names))


def from_files(name, arrays, where):
    """:func:`from_arrays` of a dict read from files (``x_train`` ... and optional ``class_names``)."""
    return from_arrays(name, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                       arrays["y_test"], arrays.get("class_names"), where=where)
