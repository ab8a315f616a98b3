"""Data-set specs -> sources: ``load("npz:PATH")`` finds the source by the part before the colon.

Each source module (``digits``, ``keras_datasets``, ``npz``, ``idx``, ``folder``, ``synthetic``) has
``load(arg, *, seed, test_fraction)``; a new source is one module and one entry in ``SOURCES``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kcnn.data import digits, folder, idx, keras_datasets, npz, synthetic
from kcnn.data.arrays import DataError
from kcnn.data.folder import FolderData
from kcnn.data.image_data import ImageData


@dataclass(frozen=True)
class Source:
    """How to load one kind of spec: its loader, its spec pattern and what its argument is."""

    load: Callable[..., "ImageData | FolderData"]
    spec: str
    argument: str  # "none", "optional" (synthetic sizes), "path" or "name" (keras.datasets)


SOURCES = {
    "digits": Source(digits.load, digits.SPEC, "none"),
    **{name: Source(keras_datasets.load, name, "name") for name in keras_datasets.KERAS_DATASETS},
    "npz": Source(npz.load, npz.SPEC, "path"),
    "idx": Source(idx.load, idx.SPEC, "path"),
    "folder": Source(folder.load, folder.SPEC, "path"),
    "synthetic": Source(synthetic.load, synthetic.SPEC, "optional"),
}


def available() -> list:
    """The data-set specs :func:`load` accepts (``PATH``/``DIR``/``N`` are placeholders)."""
    return [source.spec for source in SOURCES.values()]


def _check_load_arguments(spec, seed, test_fraction):
    specs = ", ".join(available())
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"spec must be a non-empty string, one of {specs}; received {spec!r}")
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be a number in (0, 1); received {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an int; received {seed!r}")


def load(spec: str, *, seed: int = 0, test_fraction: float = 0.2) -> ImageData | FolderData:
    """Load a data set by spec (see :func:`available`).

    Every source gives an :class:`ImageData` of arrays, except ``folder:DIR``: a
    :class:`FolderData`, the list of its image files, decoded as they stream (any size).

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
    _check_load_arguments(spec, seed, test_fraction)
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    source = SOURCES.get(kind)
    if source is None or (arg and source.argument in ("none", "name")):
        raise DataError(f"unknown data set spec {spec!r}; valid specs: {', '.join(available())}")
    if source.argument == "path":
        if not arg.strip():
            raise DataError(f"spec {spec!r} needs a path: {source.spec!r}")
        arg = os.path.expanduser(arg.strip())
    elif source.argument == "name":
        arg = kind
    return source.load(arg, seed=int(seed), test_fraction=test_fraction)
