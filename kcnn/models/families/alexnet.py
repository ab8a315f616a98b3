"""AlexNet: five convs, three 3/2 max-pools, two wide dense layers (d2l's and the ImageNet layout)."""
from __future__ import annotations

from kcnn.models import checks
from kcnn.models.assembly import assemble
from kcnn.models.specs import Conv, Pool, classifier


def specs(num_classes=10, *, imagenet=False, hidden_units=4096, dropout=0.5):
    """AlexNet's layers; ``imagenet`` drops conv1's padding (227x227 input)."""
    return [
        Conv("conv1", 96, 11, stride=4, padding=0 if imagenet else 1),
        Pool("pool1", "max", 3, 2),
        Conv("conv2", 256, 5, padding=2),
        Pool("pool2", "max", 3, 2),
        Conv("conv3", 384, 3, padding=1),
        Conv("conv4", 384, 3, padding=1),
        Conv("conv5", 256, 3, padding=1),
        Pool("pool3", "max", 3, 2),
    ] + classifier(hidden_units, dropout, num_classes)


def alexnet(conv="builtin", input_shape=None, num_classes=None, *, imagenet=False,
            hidden_units=4096, dropout=0.5):
    """AlexNet: five convs (96, 256, 384, 384, 256), three 3/2 max-pools, two 4096 dense layers.

    The default is d2l's variant for 1-channel 224x224 input (conv1 11x11 stride 4 padding 1, a
    6,400-value flatten, 10 classes). ``imagenet=True`` (``"alexnet-imagenet"``) is the original
    227x227x3 layout without padding on conv1 (9,216-value flatten, 1000 classes), as a single
    tower: no grouped convolutions and no local response normalisation.

    Args:
        conv: ``"builtin"`` or ``"explicit"``.
        input_shape: ``(height, width, channels)``; default ``(224, 224, 1)`` or ``(227, 227, 3)``.
        num_classes: number of output logits; default 10, or 1000 with ``imagenet=True``.
        imagenet: build the original ImageNet layout.
        hidden_units: width of the two hidden dense layers (4096 in the paper).
        dropout: dropout rate after each hidden dense layer.
    """
    if input_shape is None:
        input_shape = (227, 227, 3) if imagenet else (224, 224, 1)
    if num_classes is None:
        num_classes = 1000 if imagenet else 10
    checks.check_num_classes(num_classes)
    checks.check_positive("hidden_units", hidden_units, integer=True)
    checks.check_dropout(dropout)
    layers = specs(num_classes, imagenet=bool(imagenet), hidden_units=int(hidden_units),
                   dropout=float(dropout))
    return assemble("alexnet-imagenet" if imagenet else "alexnet", layers, conv, input_shape)
