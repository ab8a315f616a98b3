"""``synthetic[:N[:HxW[xC]]]``: deterministic generated oriented-stripe images (smoke tests, benchmarks)."""
from __future__ import annotations

import numpy as np

from kcnn.data.arrays import DataError
from kcnn.data.image_data import ImageData

SPEC = "synthetic[:N[:HxW[xC]]]"


def load(arg="", *, seed=0, test_fraction=0.2):
    """``synthetic[:N[:HxW[xC]]]``: :func:`synthetic` with the sizes the spec names."""
    spec = f"synthetic:{arg}" if arg else "synthetic"
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
