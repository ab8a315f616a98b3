"""kcnn.models.load and the documented ``import kcnn.layers`` + ``keras.models.load_model``: a saved
explicit model loads in a fresh interpreter (a subprocess on the active backend) with equal outputs."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kcnn import models


def _run_fresh(code, tmp_path):
    """``code`` in a new interpreter (same backend, same environment); fails on a non-zero exit."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": keras.backend.backend()}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def saved_explicit(tmp_path_factory):
    """(path, images, outputs) of a compiled explicit LeNet saved as model.keras, as kcnn-train
    leaves it."""
    keras.utils.set_random_seed(0)
    model = models.build("lenet", conv="explicit", input_shape=(16, 16, 1), num_classes=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    folder = tmp_path_factory.mktemp("saved")
    path = folder / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).random((4, 16, 16, 1), dtype=np.float32)
    np.save(folder / "x.npy", x)
    return path, x, model.predict(x, verbose=0)


def test_kcnn_models_load_needs_no_other_import(saved_explicit, tmp_path):
    path, _, expected = saved_explicit
    stdout = _run_fresh(f"""
        import keras
        import numpy as np
        try:  # plain Keras cannot find kcnn's classes: the reason load() exists
            keras.models.load_model({str(path)!r})
        except Exception as err:
            print("plain keras:", type(err).__name__, err)
        import kcnn.models
        model = kcnn.models.load({str(path)!r})
        assert type(model.layers[1]).__name__ == "CrossCorrelation2D", model.layers[1]
        assert model.compiled  # compiled, as saved
        x = np.load({str(path.parent / "x.npy")!r})
        np.save("out.npy", model.predict(x, verbose=0))
    """, tmp_path)
    assert "Could not locate class 'CrossCorrelation2D'" in stdout
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_import_kcnn_layers_then_keras_load_model(saved_explicit, tmp_path):
    path, _, expected = saved_explicit
    _run_fresh(f"""
        import sys
        import keras
        import numpy as np
        import kcnn.layers  # registers kcnn's layers with Keras: the documented way
        model = keras.models.load_model({str(path)!r})
        assert "kcnn.models" not in sys.modules
        x = np.load({str(path.parent / "x.npy")!r})
        np.save("out.npy", model.predict(x, verbose=0))
    """, tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_load_in_process_returns_equal_outputs(saved_explicit):
    path, x, expected = saved_explicit
    model = models.load(str(path), compile=False)
    assert not model.compiled
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)


def test_bad_paths_name_the_path(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or os.PathLike.*received int 3"):
        models.load(3)
    with pytest.raises(ValueError, match=r"must name a \.keras file.*model\.h5"):
        models.load(tmp_path / "model.h5")
    missing = tmp_path / "missing.keras"
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        models.load(missing)
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(FileNotFoundError, match="folder.keras"):
        models.load(tmp_path / "folder.keras")
    text = tmp_path / "text.keras"
    text.write_text("not a zip archive")
    with pytest.raises(ValueError, match="text.keras.*not a Keras model file"):
        models.load(text)


def test_safe_mode_stays_on_by_default(tmp_path):
    """A saved Python lambda is code: load refuses it unless safe_mode=False is passed."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda v: v * 2.0)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        models.load(path)
    loaded = models.load(path, safe_mode=False)
    x = np.ones((1, 4), dtype="float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), 2 * x)
