"""VGG: blocks of 3x3 padding-1 ReLU convs, each block closed by a 2/2 max-pool."""
from __future__ import annotations

from kcnn.models import checks
from kcnn.models.assembly import assemble
from kcnn.models.specs import Conv, Pool, classifier

# VGG configurations as (num_convs, channels) per block, as in d2l's ``conv_arch``.
VGG_ARCHS = {
    11: ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    13: ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    16: ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    19: ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


def specs(num_classes=10, *, depth=11, arch=None, width_ratio=1, hidden_units=4096, dropout=0.5):
    """VGG's layers for ``arch`` (or ``VGG_ARCHS[depth]``), every width divided by ``width_ratio``."""
    out = []
    for b, (num_convs, channels) in enumerate(arch or VGG_ARCHS[depth], start=1):
        for c in range(1, num_convs + 1):
            out.append(Conv(f"block{b}_conv{c}", channels // width_ratio, 3, padding=1))
        out.append(Pool(f"block{b}_pool", "max", 2, 2))
    return out + classifier(hidden_units, dropout, num_classes)


def vgg(conv="builtin", input_shape=(224, 224, 1), num_classes=10, *, depth=11, arch=None,
        width_ratio=1, hidden_units=4096, dropout=0.5):
    """VGG: blocks of 3x3 padding-1 ReLU convs, each followed by a 2/2 max-pool, then 4096-4096.

    Args:
        conv: ``"builtin"`` or ``"explicit"``.
        input_shape: ``(height, width, channels)``; at least 32x32 for five blocks. The first dense
            layer's input follows it (7x7xC at 224x224).
        num_classes: number of output logits, >= 2.
        depth: 11, 13, 16 or 19 — picks the configuration from ``VGG_ARCHS``.
        arch: explicit configuration, a sequence of ``(num_convs, channels)`` blocks (overrides
            ``depth``; the model is then named ``"vgg"``).
        width_ratio: integer that divides every conv channel count (d2l's small VGG uses 4).
        hidden_units: width of the two hidden dense layers.
        dropout: dropout rate after each hidden dense layer.
    """
    if arch is None:
        if depth not in VGG_ARCHS:
            raise ValueError(
                f"depth must be one of {sorted(VGG_ARCHS)}; received depth={depth!r}")
        arch, name = VGG_ARCHS[depth], f"vgg{depth}"
    else:
        arch, name = checks.check_arch(arch), "vgg"
    checks.check_num_classes(num_classes)
    narrowest = min(channels for _, channels in arch)
    checks.check_positive("width_ratio", width_ratio, integer=True, upper=narrowest)
    checks.check_positive("hidden_units", hidden_units, integer=True)
    checks.check_dropout(dropout)
    layers = specs(num_classes, arch=arch, width_ratio=int(width_ratio),
                   hidden_units=int(hidden_units), dropout=float(dropout))
    return assemble(name, layers, conv, input_shape)
