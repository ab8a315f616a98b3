"""kcnn.layers.keras_compat: every private Keras name kcnn uses still exists, and only that module imports keras.src."""

import pathlib

import keras
import pytest

from kcnn.layers import keras_compat

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(keras_compat.PRIVATE_NAMES))
def test_private_name_still_exists(name):
    assert callable(keras_compat.private(name)), f"{name} moved in keras {keras.__version__}"


def test_private_kernel_attribute_still_exists():
    layer = keras.layers.Conv2D(2, 3)
    layer.build((None, 5, 5, 1))
    layer.enable_lora(1)
    assert keras_compat.stored_kernel(layer) is layer._kernel
    assert isinstance(layer._kernel, keras.Variable)


def test_a_moved_name_fails_naming_it(monkeypatch):
    monkeypatch.setitem(keras_compat.PRIVATE_NAMES, "AutocastScope", "keras.src.no_such_module")
    with pytest.raises(ImportError, match="`AutocastScope` in `keras.src.no_such_module`"):
        keras_compat.private("AutocastScope")


def test_no_other_module_imports_keras_src():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("layers", "kcnn", "export")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "keras_compat.py" and "keras.src" in path.read_text()
    ]
    assert offenders == []
