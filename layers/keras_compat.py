"""The one place kcnn reaches into Keras's private code (``keras.src``), for names with no public form.

A Keras release that moves one breaks this file only, with an ``ImportError`` naming it
(``tests/layers/test_keras_compat.py`` checks each); ``pyproject.toml`` bounds ``keras < 4``.
``AutocastScope`` reads variables in their stored dtype, ``standardize_*`` are Conv2D's own checks
and messages, ``keras_home`` is Keras's download cache, :func:`stored_kernel` Conv2D's kernel variable.
"""

import importlib

import keras

PRIVATE_NAMES = {  # name → the private module it is imported from
    "AutocastScope": "keras.src.backend.common.variables", "standardize_data_format": "keras.src.backend",
    "standardize_tuple": "keras.src.utils.argument_validation", "keras_home": "keras.src.backend.config",
    "standardize_padding": "keras.src.utils.argument_validation"}


def private(name):
    """``name`` from its module in :data:`PRIVATE_NAMES`; ``ImportError`` naming both if it moved."""
    module = PRIVATE_NAMES[name]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ImportError(f"keras {keras.__version__} no longer has the private name `{name}` in `{module}`, "
                          "which kcnn uses; update kcnn/layers/keras_compat.py") from error


AutocastScope, standardize_data_format, standardize_tuple, keras_home, standardize_padding = map(
    private, PRIVATE_NAMES)  # in PRIVATE_NAMES' order


def stored_kernel(layer):
    """The kernel variable of a built ``keras.layers.Conv2D`` (``layer._kernel``)."""
    try:
        return layer._kernel
    except AttributeError as error:
        raise AttributeError(f"keras {keras.__version__}'s Conv2D no longer keeps its kernel variable in "
                             "`_kernel`, which kcnn uses; update kcnn/layers/keras_compat.py") from error
