"""Architecture as data: the layer specs every builder lists, and the spatial arithmetic on them.

A network is a list of small named tuples (like torchvision's VGG ``cfgs``); ``assembly`` turns the
list into Keras layers for either convolution implementation.
"""
from __future__ import annotations

from typing import NamedTuple

from kcnn.layers.validation import output_length


class Conv(NamedTuple):
    """A square convolution with symmetric zero ``padding`` on every side."""

    name: str
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    activation: str | None = "relu"


class Pool(NamedTuple):
    """A square, unpadded pooling window; ``kind`` is ``"max"`` or ``"avg"``."""

    name: str
    kind: str
    size: int
    stride: int


class Flatten(NamedTuple):
    """Flatten the feature maps before the dense classifier."""

    name: str = "flatten"


class Dense(NamedTuple):
    """A fully connected layer."""

    name: str
    units: int
    activation: str | None = "relu"


class Dropout(NamedTuple):
    """Dropout at ``rate`` during training."""

    name: str
    rate: float


def spatial_out(specs, size):
    """Spatial size after all conv/pool specs for a square input of ``size``, or None if it vanishes."""
    for spec in specs:
        if isinstance(spec, Conv):
            size = output_length(size, spec.kernel, spec.stride, 1, 2 * spec.padding)
        elif isinstance(spec, Pool):
            size = output_length(size, spec.size, spec.stride, 1, 0)
        else:
            continue
        if size < 1:
            return None
    return size


def min_size(specs, limit=1 << 14):
    """Smallest square input side for which every conv/pool spec has an output."""
    for size in range(1, limit):
        if spatial_out(specs, size) is not None:
            return size
    raise ValueError("architecture has no valid input size")  # pragma: no cover


def classifier(hidden_units, dropout, num_classes):
    """AlexNet's and VGG's head: flatten, two dropout-regularised hidden layers, the logits."""
    return [
        Flatten(),
        Dense("fc1", hidden_units), Dropout("dropout1", dropout),
        Dense("fc2", hidden_units), Dropout("dropout2", dropout),
        Dense("logits", num_classes, None),
    ]
