"""LeNet-5 as in d2l: two 5x5 convs with 2x2 pooling, then 120-84-classes."""
from __future__ import annotations

from kcnn.models import checks
from kcnn.models.assembly import assemble
from kcnn.models.specs import Conv, Dense, Flatten, Pool


def specs(num_classes=10, *, modern=False):
    """LeNet's layers: sigmoid + average pooling, or ReLU + max pooling when ``modern``."""
    act, pool = ("relu", "max") if modern else ("sigmoid", "avg")
    return [
        Conv("conv1", 6, 5, padding=2, activation=act),
        Pool("pool1", pool, 2, 2),
        Conv("conv2", 16, 5, activation=act),
        Pool("pool2", pool, 2, 2),
        Flatten(),
        Dense("fc1", 120, act),
        Dense("fc2", 84, act),
        Dense("logits", num_classes, None),
    ]


def lenet(conv="builtin", input_shape=(28, 28, 1), num_classes=10, *, modern=False):
    """LeNet-5 as in d2l: two sigmoid 5x5 convs with 2x2 average pooling, then 120-84-classes.

    Args:
        conv: ``"builtin"`` (Keras Conv2D) or ``"explicit"`` (``kcnn.layers.CrossCorrelation2D``).
        input_shape: ``(height, width, channels)``; at least 12x12 (28x28x1 gives 61,706 params).
        num_classes: number of output logits, >= 2.
        modern: ReLU and max-pooling instead of sigmoid and average pooling (``"lenet-modern"``).

    Returns:
        An uncompiled ``keras.Model`` named ``"lenet"`` or ``"lenet-modern"``.
    """
    checks.check_num_classes(num_classes)
    name = "lenet-modern" if modern else "lenet"
    return assemble(name, specs(num_classes, modern=bool(modern)), conv, input_shape)
