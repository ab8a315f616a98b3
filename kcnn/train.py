"""``kcnn.train``: the training API under its short name (everything lives in :mod:`kcnn.training`)."""
from kcnn import training as _training

__all__ = _training.__all__


def __getattr__(name):
    return getattr(_training, name)


def __dir__():
    return __all__
