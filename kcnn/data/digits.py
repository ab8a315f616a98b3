"""``digits``: scikit-learn's 1,797 bundled 8x8 handwritten digits (no download)."""
from __future__ import annotations

import numpy as np

from kcnn.data.image_data import ImageData

DIGIT_NAMES = tuple(str(i) for i in range(10))
SPEC = "digits"


def load(arg="", *, seed=0, test_fraction=0.2):
    """The digits as uint8 0..255 images ``(n, 8, 8, 1)``, split stratified by ``seed``."""
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
