"""Real images for checking an export, without importing kcnn.data (kcnn.export stands alone).

``load_samples("digits")`` — scikit-learn's bundled 8×8 digits (no download), as uint8 images;
``load_samples("PATH.npz")`` — ``x_test`` (and ``y_test`` if present) from an ``.npz`` file.
The images are returned as stored; :meth:`kcnn.export.OnnxPredictor.preprocess` resizes and
scales them to the model's input.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np
from kcnn.export.checks import check_positive


def load_samples(spec, *, limit=256, seed=0):
    """Return ``(x, y)``: up to ``limit`` images (a fixed random subset) and labels (or None).

    Args:
        spec: ``"digits"`` or the path of an ``.npz`` file with ``x_test`` (images
            ``(n, H, W[, C])`` uint8, or float32 already preprocessed) and optional ``y_test``.
        limit: largest number of samples returned.
        seed: seed of the subset choice.
    """
    limit = check_positive("limit", limit, integer=True)
    if spec == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        y = digits.target.astype(np.int64)
    else:
        path = pathlib.Path(str(spec))
        if path.suffix != ".npz":
            raise ValueError(
                f"samples must be 'digits' or a path ending in '.npz'; received {spec!r}.")
        if not path.is_file():
            raise FileNotFoundError(f"samples file not found: {str(path)!r}")
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"cannot read {str(path)!r} as an .npz file of arrays "
                             f"(pickled objects are refused): {err}") from None
        if not hasattr(data, "files"):  # a bare .npy array saved under an .npz name
            raise ValueError(f"{str(path)!r} holds a single array, not an .npz archive with "
                             f"'x_test'.")
        with data:
            if "x_test" not in data.files:
                raise ValueError(
                    f"{str(path)!r} has no 'x_test' array; it has {sorted(data.files)}.")
            try:
                x = data["x_test"]
                y = data["y_test"] if "y_test" in data.files else None
            except ValueError as err:  # object arrays need pickle, which is refused
                raise ValueError(f"cannot read {str(path)!r}: {err}") from None
        if len(x) == 0:
            raise ValueError(f"{str(path)!r} has an empty 'x_test'.")
        if y is not None and len(y) != len(x):
            raise ValueError(
                f"{str(path)!r}: y_test has {len(y)} labels for {len(x)} images.")
    if len(x) > limit:
        index = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
        x, y = x[index], (None if y is None else y[index])
    return x, y
