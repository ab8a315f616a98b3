"""Transitional alias of kcnn.training.devices + distribution (removed once every caller moved)."""
from kcnn.training.devices import *  # noqa: F401,F403
from kcnn.training.devices import configured_backend, device_report  # noqa: F401
from kcnn.training.distribution import *  # noqa: F401,F403
