"""Argument validators and padding arithmetic shared by the convolution and pooling layers.

Importable as ``kcnn.layers.validation`` (it depends on Keras only), so kcnn core checks its
own arguments the same way (``kcnn.export``, which never imports Keras, has the same checks in
``kcnn.export.checks``):

* :func:`is_int`, :func:`is_real`, :func:`check_positive`, :func:`standardize_tuple`,
  :func:`standardize_choice` — argument checks that raise ``ValueError`` naming the argument,
  the value and what is accepted;
* :func:`standardize_explicit_padding`, :func:`standardize_padding` — ``padding`` specs;
* :func:`same_padding`, :func:`resolve_padding`, :func:`output_length` — the arithmetic.
"""

import math
import numbers

from kcnn.layers import keras_compat

__all__ = [
    "PADDING_ACCEPTED",
    "check_positive",
    "is_int",
    "is_real",
    "output_length",
    "resolve_padding",
    "same_padding",
    "standardize_choice",
    "standardize_explicit_padding",
    "standardize_padding",
    "standardize_tuple",
]

PADDING_ACCEPTED = (
    "'valid', 'same', a non-negative int, a pair (pad_h, pad_w) or "
    "((top, bottom), (left, right))"
)


def is_int(value):
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """True for Python and NumPy real numbers (ints included), False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive(name, value, *, integer=False, upper=None):
    """``value`` as an ``int`` (``integer=True``) or ``float`` if it is a positive, finite number
    no larger than ``upper``; else ``ValueError`` naming ``name`` and the value.

    The positivity check of the layers, builders, recipes and data pipelines (the same message
    as ``kcnn.export.checks.check_positive``), so the same mistake reads the same everywhere.
    """
    ok = is_int(value) if integer else is_real(value) and math.isfinite(value)
    if not ok or value <= 0 or (upper is not None and value > upper):
        kind = "a positive integer" if integer else "a positive finite number"
        limit = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be {kind}{limit}; received {name}={value!r}")
    return int(value) if integer else float(value)


def standardize_tuple(value, n, name, allow_zero=False):
    """``value`` (an int or ``n`` ints) as a tuple of ``n`` positive ints (Keras's own check).

    Raises ``ValueError`` naming ``name`` and the value otherwise.
    """
    return keras_compat.standardize_tuple(value, n, name, allow_zero=allow_zero)


def standardize_choice(value, name, accepted):
    """``value`` if it is one of ``accepted``, else ``ValueError`` listing the accepted values."""
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(
            f"Invalid value for argument `{name}`: {value!r}. Expected one of "
            + ", ".join(repr(a) for a in accepted)
            + "."
        )
    return value


def standardize_explicit_padding(padding):
    """Normalise an explicit padding spec to ``((top, bottom), (left, right))``, or None.

    Accepts an int ``p``, a pair ``(ph, pw)`` or ``((top, bottom), (left, right))`` of
    non-negative ints (lists too, as they come back from a saved config). Strings are not
    explicit padding: returns None for them. Anything else raises ``ValueError``.
    """
    if isinstance(padding, str):
        return None
    error = f"The `padding` argument must be {PADDING_ACCEPTED}. Received padding={padding!r}"
    if is_int(padding):
        pairs = ((padding, padding), (padding, padding))
    elif isinstance(padding, (list, tuple)) and len(padding) == 2:
        if all(is_int(p) for p in padding):
            pairs = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif all(isinstance(p, (list, tuple)) and len(p) == 2 and all(map(is_int, p)) for p in padding):
            pairs = tuple(tuple(p) for p in padding)
        else:
            raise ValueError(error)
    else:
        raise ValueError(error)
    pairs = tuple((int(p[0]), int(p[1])) for p in pairs)
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(error + " (negative values are not accepted)")
    return pairs


def standardize_padding(padding):
    """``"valid"``, ``"same"`` (case-insensitive) or ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        return keras_compat.standardize_padding(padding)
    return standardize_explicit_padding(padding)


def output_length(size, kernel, stride=1, dilation=1, pad_total=0):
    """Output length along one axis: ``floor((n + p_total − d·(k−1) − 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size, kernel, stride=1, dilation=1):
    """(before, after) zero padding that Keras/TensorFlow use for ``padding="same"``.

    ``size`` may be a scalar tensor (a spatial size known only at run time, or a traced one: a
    PyTorch export traces sizes as int64 tensors). With stride 1 the padding does not depend on
    the size and is always a Python int.
    """
    if stride == 1:
        total = dilation * (kernel - 1)
    else:
        out = (size + stride - 1) // stride
        total = (out - 1) * stride + dilation * (kernel - 1) + 1 - size
    if isinstance(total, int):
        total = max(total, 0)
    else:
        # max(total, 0) with the tensor's own operators: keras.ops.maximum would cast PyTorch's
        # int64 sizes to int32, and an exported graph cannot mix the two.
        total = (total + abs(total)) // 2
    before = total // 2
    return before, total - before


def resolve_padding(padding, input_hw, kernel_size, strides, dilation=(1, 1)):
    """``((top, bottom), (left, right))`` for ``"valid"``, ``"same"`` or an explicit spec."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(
            same_padding(n, k, s, d) for n, k, s, d in zip(input_hw, kernel_size, strides, dilation)
        )
    return tuple(padding)
