"""Transitional alias of kcnn.training.runs (removed once every caller moved)."""
from kcnn.training.runs import *  # noqa: F401,F403
from kcnn.training.runs import RunConfig, RunError, execute, load_config  # noqa: F401
