"""Argument checks of the model builders (Keras-style messages naming the argument and value).

The primitives (:func:`is_int`, :func:`is_real`, :func:`check_positive`) are
``kcnn.export.checks``', shared with the exporter, recipes and data pipelines.
"""
from __future__ import annotations

from kcnn.export.checks import check_positive, is_int, is_real

__all__ = ["CONVS", "check_arch", "check_conv", "check_dropout", "check_input_shape",
           "check_num_classes", "check_positive"]

CONVS = ("builtin", "explicit")


def check_conv(conv):
    """Raise ValueError unless ``conv`` is one of ``CONVS``."""
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {', '.join(map(repr, CONVS))}; received conv={conv!r}")


def check_num_classes(num_classes):
    """Raise ValueError unless ``num_classes`` is an integer >= 2."""
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2; received num_classes={num_classes!r}")


def check_input_shape(input_shape):
    """``(height, width, channels)`` as ints, or ValueError."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3 or not all(is_int(d) and d > 0 for d in shape):
        raise ValueError(
            "input_shape must be 3 positive integers (height, width, channels); "
            f"received input_shape={input_shape!r}")
    return tuple(int(d) for d in shape)


def check_dropout(dropout):
    """Raise ValueError unless ``dropout`` is a number in [0, 1)."""
    if not is_real(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1); received dropout={dropout!r}")


def check_arch(arch):
    """A VGG configuration as a tuple of ``(num_convs, channels)`` pairs of positive ints."""
    try:
        blocks = tuple((int(n), int(c)) for n, c in arch)
        ok = len(blocks) > 0 and all(
            is_int(n) and is_int(c) and n > 0 and c > 0 for n, c in arch)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "arch must be a non-empty sequence of (num_convs, channels) pairs of positive "
            f"integers; received arch={arch!r}")
    return blocks
