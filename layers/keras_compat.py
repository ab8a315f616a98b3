"""The one place kcnn reaches into Keras's private code (``keras.src``), for names Keras has no public form of.

Every other module imports these from here, so a Keras release that moves one breaks this file only,
with an ``ImportError`` naming the name and where it used to live (``tests/layers/test_keras_compat.py``
fails naming it). ``pyproject.toml`` bounds ``keras < 4``.

* :data:`AutocastScope` — reads variables in their stored dtype under a mixed-precision policy;
* :func:`standardize_data_format`, :func:`standardize_tuple`, :func:`standardize_padding` —
  Keras's own argument checks, so kcnn's layers raise Conv2D's exact messages;
* :func:`keras_home` — the folder Keras caches downloads in (``$KERAS_HOME`` as read at import, else
  ``~/.keras``);
* :func:`stored_kernel` — Conv2D's kernel variable itself (``_kernel``): with LoRA on, the public
  ``kernel`` is the merged tensor, not the variable.
"""

import importlib

import keras

# name → the private module it is imported from.
PRIVATE_NAMES = {
    "AutocastScope": "keras.src.backend.common.variables",
    "standardize_data_format": "keras.src.backend",
    "standardize_tuple": "keras.src.utils.argument_validation",
    "standardize_padding": "keras.src.utils.argument_validation",
    "keras_home": "keras.src.backend.config",
}
# Private attributes of public classes: (class, attribute set once the layer is built).
PRIVATE_ATTRIBUTES = ((keras.layers.Conv2D, "_kernel"),)


def private(name):
    """``name`` from its module in :data:`PRIVATE_NAMES`; ``ImportError`` naming both if it moved."""
    module = PRIVATE_NAMES[name]
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ImportError(
            f"keras {keras.__version__} no longer has the private name `{name}` in `{module}`, "
            "which kcnn uses; update kcnn/layers/keras_compat.py"
        ) from error


AutocastScope = private("AutocastScope")
standardize_data_format = private("standardize_data_format")
standardize_tuple = private("standardize_tuple")
standardize_padding = private("standardize_padding")
keras_home = private("keras_home")


def stored_kernel(layer):
    """The kernel variable of a built ``keras.layers.Conv2D`` (``layer._kernel``)."""
    try:
        return layer._kernel
    except AttributeError as error:
        raise AttributeError(
            f"keras {keras.__version__}'s Conv2D no longer keeps its kernel variable in `_kernel`, "
            "which kcnn uses; update kcnn/layers/keras_compat.py"
        ) from error
