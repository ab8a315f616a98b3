"""Model names -> builders (timm-style ``build(name)``), and the input size each name needs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

from kcnn.models.families import alexnet as _alexnet
from kcnn.models.families import lenet as _lenet
from kcnn.models.families import vgg as _vgg
from kcnn.models.specs import min_size


@dataclass(frozen=True)
class Entry:
    """A registered name: its builder, the keyword arguments the name fixes, its spec function."""

    builder: Callable[..., keras.Model]
    fixed: dict
    specs: Callable[..., list]


REGISTRY = {
    "lenet": Entry(_lenet.lenet, {}, _lenet.specs),
    "lenet-modern": Entry(_lenet.lenet, {"modern": True}, _lenet.specs),
    "alexnet": Entry(_alexnet.alexnet, {}, _alexnet.specs),
    "alexnet-imagenet": Entry(_alexnet.alexnet, {"imagenet": True}, _alexnet.specs),
    **{f"vgg{d}": Entry(_vgg.vgg, {"depth": d}, _vgg.specs) for d in _vgg.VGG_ARCHS},
}

# Builder keywords that change the conv/pool stack (and so the smallest input); the rest don't.
_GEOMETRY_KEYWORDS = ("modern", "imagenet", "depth", "arch")


def available():
    """Sorted names accepted by ``build``."""
    return sorted(REGISTRY)


def entry(name):
    """The registry entry of ``name``; ValueError listing ``available()`` for unknown names."""
    if name not in REGISTRY:
        raise ValueError(
            f"Unknown model name {name!r}; available models: {', '.join(available())}")
    return REGISTRY[name]


def build(name, **kwargs):
    """Build a registered model by name, e.g. ``build("vgg11", conv="explicit", width_ratio=4)``.

    Keyword arguments go to the builder (``conv``, ``input_shape``, ``num_classes``, and
    builder-specific ones such as ``width_ratio`` for VGG). Unknown names raise ``ValueError``
    listing ``available()``.
    """
    found = entry(name)
    clash = sorted(set(kwargs) & set(found.fixed))
    if clash:
        raise ValueError(f"model {name!r} fixes {', '.join(clash)}; do not pass it to build()")
    return found.builder(**found.fixed, **kwargs)


def min_input_size(name, **kwargs):
    """Smallest square input side that model ``name`` accepts (walks its conv/pool specs)."""
    found = entry(name)
    merged = {**found.fixed, **kwargs}
    geometry = {k: merged[k] for k in _GEOMETRY_KEYWORDS if k in merged}
    return min_size(found.specs(**geometry))
