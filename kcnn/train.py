"""``kcnn.train``: the training API under its short name (everything lives in :mod:`kcnn.training`)."""
from kcnn.training import *  # noqa: F401,F403
from kcnn.training import __all__  # noqa: F401
