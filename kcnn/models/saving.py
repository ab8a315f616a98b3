"""``load``: a saved ``.keras`` model back, with kcnn's layers known to Keras.

Keras finds a saved custom layer only once its class is registered, i.e. once the module
defining it has been imported: a fresh ``keras.models.load_model("model.keras")`` of an explicit
model fails with "Could not locate class 'CrossCorrelation2D'" unless ``kcnn.layers`` was
imported first. Importing this module imports ``kcnn.layers``, so ``load`` needs nothing else.
"""
from __future__ import annotations

import os
import zipfile

import keras

import kcnn.layers  # noqa: F401  (registers CrossCorrelation2D, MaxPool2D, AvgPool2D with Keras)


def load(path, **kwargs):
    """Load a model saved as a ``.keras`` file (``model.save``, ``kcnn-train``'s ``model.keras``).

    Works in a fresh interpreter with no other import: kcnn's layers (``CrossCorrelation2D``,
    ``MaxPool2D``, ``AvgPool2D``, LoRA-enabled or not) are registered before Keras reads the file.

    Example::

        import kcnn.models
        model = kcnn.models.load("runs/20260101-120000/model.keras")

    Args:
        path: a ``str`` or ``os.PathLike`` naming an existing ``.keras`` file.
        **kwargs: passed on to ``keras.saving.load_model``: ``compile`` (default True),
            ``safe_mode`` (default True: no Python lambdas are deserialised), ``custom_objects``.

    Returns:
        The ``keras.Model``.

    Raises:
        TypeError: ``path`` is not a string or path.
        ValueError: ``path`` does not end in ``.keras``, or the file is not a zip archive.
        FileNotFoundError: no file at ``path``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a .keras file; received "
                        f"{type(path).__name__} {path!r}")
    name = os.fspath(path)
    if not name.endswith(".keras"):
        raise ValueError(f"path must name a .keras file (saved by model.save('model.keras')); "
                         f"received path={name!r}")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"model file not found: path={name!r}")
    if not zipfile.is_zipfile(name):  # Keras would report a confusing "File not found"
        raise ValueError(f"path={name!r} is not a Keras model file: a .keras file is a zip archive "
                         "(written by model.save('model.keras')) and this one is not")
    kwargs.setdefault("safe_mode", True)
    return keras.saving.load_model(name, **kwargs)
