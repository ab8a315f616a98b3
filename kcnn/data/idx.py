"""``idx:DIR``: MNIST/Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``, ...).

The format: http://yann.lecun.com/exdb/mnist/ (big-endian magic, dimensions, unsigned bytes).
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from kcnn.data.arrays import DataError
from kcnn.data.image_data import from_files
from kcnn.data.npz import NPZ_KEYS

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
SPEC = "idx:DIR"


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


def load(directory, *, seed=0, test_fraction=0.2):
    """The data set in the IDX files of ``directory``."""
    return from_files(f"idx:{directory}", read_idx_dir(directory), where=directory)
