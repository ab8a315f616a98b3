"""Argument checks of ``kcnn.export`` (messages name the argument, the value and what is accepted).

They import no Keras (``kcnn-serve`` starts in a second and holds no TensorFlow): the one copy
for the exporter, the predictor, the Triton writer, the load test and the server's limits, and for
kcnn core's model builders, recipes and data pipelines.
"""
import math
import numbers

__all__ = ["check_positive", "is_int", "is_real"]


def is_int(value):
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """True for Python and NumPy real numbers (ints included), False for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive(name, value, *, integer=False, upper=None):
    """``value`` as an ``int`` (``integer=True``) or ``float`` if it is a positive, finite number
    no larger than ``upper``; else ``ValueError`` naming ``name`` and the value."""
    ok = is_int(value) if integer else is_real(value) and math.isfinite(value)
    if not ok or value <= 0 or (upper is not None and value > upper):
        kind = "a positive integer" if integer else "a positive finite number"
        limit = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be {kind}{limit}; received {name}={value!r}")
    return int(value) if integer else float(value)
