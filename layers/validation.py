"""Argument checks (``ValueError`` naming the argument, the value and what is accepted) and the
padding arithmetic shared by the convolution and pooling layers, and kcnn core."""

import numbers

from kcnn.layers import keras_compat

PADDING_ACCEPTED = "'valid', 'same', a non-negative int, a pair (pad_h, pad_w) or ((top, bottom), (left, right))"


def is_int(value):
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def standardize_choice(value, name, accepted):
    """``value`` if it is one of ``accepted``, else ``ValueError`` listing the accepted values."""
    if not isinstance(value, str) or value not in accepted:
        expected = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"Invalid value for argument `{name}`: {value!r}. Expected one of {expected}.")
    return value


def standardize_explicit_padding(padding):
    """``((top, bottom), (left, right))`` from an int, a pair or a pair of pairs of non-negative ints
    (lists too, as a saved config holds them), None for a string; anything else: ``ValueError``."""
    if isinstance(padding, str):
        return None
    error = f"The `padding` argument must be {PADDING_ACCEPTED}. Received padding={padding!r}"
    if is_int(padding):
        padding = (padding, padding)
    if _is_pair(padding) and all(map(is_int, padding)):
        padding = ((padding[0], padding[0]), (padding[1], padding[1]))
    if not _is_pair(padding) or not all(_is_pair(p) and all(map(is_int, p)) for p in padding):
        raise ValueError(error)
    pairs = tuple((int(before), int(after)) for before, after in padding)
    if any(v < 0 for pair in pairs for v in pair):
        raise ValueError(error + " (negative values are not accepted)")
    return pairs


def _is_pair(value):
    return isinstance(value, (list, tuple)) and len(value) == 2


def standardize_padding(padding):
    """``"valid"``, ``"same"`` (case-insensitive) or ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        return keras_compat.standardize_padding(padding)
    return standardize_explicit_padding(padding)


def output_length(size, kernel, stride=1, dilation=1, pad_total=0):
    """Output length along one axis: ``floor((n + p_total − d·(k−1) − 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size, kernel, stride=1, dilation=1):
    """(before, after) zero padding of Keras/TensorFlow's ``padding="same"``. ``size`` may be a
    scalar tensor (known only at run time, or traced as int64 by a PyTorch export); at stride 1
    the padding does not depend on it."""
    total = dilation * (kernel - 1)
    if stride > 1:  # ceil(n / s) outputs read (out − 1)·s + 1 rows of kernel starts, not n
        total += ((size + stride - 1) // stride - 1) * stride + 1 - size
    # max(total, 0) by a tensor's own operators: keras.ops.maximum casts PyTorch's int64 sizes to int32.
    total = max(total, 0) if isinstance(total, int) else (total + abs(total)) // 2
    before = total // 2
    return before, total - before


def resolve_padding(padding, input_hw, kernel_size, strides, dilation=(1, 1)):
    """``((top, bottom), (left, right))`` for ``"valid"``, ``"same"`` or an explicit spec."""
    if padding == "same":
        return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(input_hw, kernel_size, strides, dilation))
    return ((0, 0), (0, 0)) if padding == "valid" else tuple(padding)
