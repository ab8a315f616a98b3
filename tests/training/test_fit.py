"""kcnn.train.fit: model.fit with recipes, history, resume, NaN guard, reproducibility."""
import math
import re

import keras
import numpy as np
import pytest

from kcnn import data as kdata
from kcnn import models
from kcnn import training as train
from kcnn.training import recipes, trainer
from kcnn.files import read_history


@pytest.fixture(scope="module")
def tiny():
    """160 noisy 16x16 images; class k has a bright square in quadrant k (easy to learn)."""
    rng = np.random.default_rng(0)
    y = np.arange(160) % 4
    x = rng.uniform(0, 60, (160, 16, 16, 1))
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, 8 * r + 2:8 * r + 6, 8 * c + 2:8 * c + 6] += 180
    x = x.astype(np.uint8)
    return kdata.ImageData("quadrants", x[:128], y[:128], x[128:], y[128:], ("a", "b", "c", "d"))


def _model(recipe, seed=0):
    keras.utils.set_random_seed(seed)
    return models.build(recipe.model, input_shape=(16, 16, 1), num_classes=4)


def _recipe(**kw):
    values = dict(epochs=2, batch_size=32, image_size=16)
    values.update(kw)
    return recipes.get(values.pop("recipe", "modern"), "lenet", **values)


def test_fit_returns_history_and_metrics(tiny, tmp_path):
    r = _recipe()
    result = train.fit(_model(r), tiny, r, out=str(tmp_path), seed=0, verbose=0)
    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        assert {"loss", "accuracy", "test_loss", "test_accuracy", "lr", "seconds"} <= set(row)
    # cosine decay: the second epoch starts below the peak learning rate
    assert result.history[1]["lr"] < r.lr
    m = result.metrics
    assert m["epochs"] == 2 and m["num_train"] == tiny.num_train
    assert m["test_accuracy"] == pytest.approx(result.history[-1]["test_accuracy"])
    assert m["train_examples_per_second"] > 0 and m["backend"] == keras.backend.backend()
    assert re.fullmatch(r"loss \d+\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}, "
                        r"\d+\.\d examples/sec on cpu", result.summary_line())
    # history.csv holds the same rows; the backup is removed once the run finished
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 3
    assert not (tmp_path / "backup").exists()


def test_fit_learns(tiny):
    r = _recipe(epochs=5, lr=0.01)
    result = train.fit(_model(r), tiny, r, seed=0, verbose=0, jit_compile=False)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0] * 0.5
    assert result.metrics["test_accuracy"] >= 0.9  # chance is 0.25


def test_same_seed_same_metrics(tiny):
    r = _recipe(epochs=1)
    a = train.fit(_model(r, seed=3), tiny, r, seed=3, verbose=0, jit_compile=False).history
    b = train.fit(_model(r, seed=3), tiny, r, seed=3, verbose=0, jit_compile=False).history
    keys = ("loss", "accuracy", "test_loss", "test_accuracy")
    assert [a[0][k] for k in keys] == [b[0][k] for k in keys]
    assert a[0]["loss"] != pytest.approx(2.0)  # a real loss, not a constant


def test_recipe_by_name_uses_the_model_name(tiny):
    model = models.build("lenet-modern", input_shape=(16, 16, 1), num_classes=4)
    with pytest.raises(ValueError, match="no recipe for model"):
        train.fit(keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(4)], name="mlp"), tiny, "modern")
    with pytest.raises(ValueError, match="model outputs 3 classes but data"):
        train.fit(models.build("lenet", input_shape=(16, 16, 1), num_classes=3), tiny, "d2l")
    with pytest.raises(TypeError, match="recipe must be a kcnn.training.recipes.Recipe"):
        train.fit(model, tiny, 3)
    with pytest.raises(ValueError, match="early_stopping must be None or a positive int"):
        train.fit(model, tiny, "modern", early_stopping=0)
    with pytest.raises(TypeError, match="data must be a kcnn.data.ImageData"):
        train.fit(model, [1, 2], "modern")


def test_nan_loss_stops_with_a_clear_error(tiny):
    r = _recipe(optimizer="sgd", schedule="constant", lr=1e30, epochs=3)  # ReLU LeNet explodes
    with pytest.raises(train.TrainingDiverged, match=r"loss became (nan|inf) at epoch 1, batch \d"):
        train.fit(_model(r), tiny, r, seed=0, verbose=0, jit_compile=False)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_from_its_backup(tiny, tmp_path):
    r = _recipe(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.fit(_model(r), tiny, r, out=str(tmp_path), seed=0, verbose=0,
                  callbacks=[_Interrupt()], jit_compile=False)
    assert (tmp_path / "backup").is_dir()
    assert [row["epoch"] for row in read_history(tmp_path / "history.csv")] == [1]
    result = train.fit(_model(r), tiny, r, out=str(tmp_path), seed=0, verbose=0,
                       jit_compile=False)
    assert result.metrics["epochs_this_run"] == 2
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert [row["epoch"] for row in read_history(tmp_path / "history.csv")] == [1, 2, 3]


def test_early_stopping_restores_best_weights(tiny):
    # Test labels shifted by one class: the better the model learns, the worse the test loss.
    wrong = kdata.ImageData("wrong", tiny.x_train, tiny.y_train, tiny.x_test,
                            (tiny.y_test + 1) % 4, tiny.class_names)
    r = _recipe(epochs=8, lr=0.01)
    result = train.fit(_model(r), wrong, r, seed=0, verbose=0, jit_compile=False,
                       early_stopping=1)
    assert result.metrics["stopped_early"] and result.metrics["epochs"] < 8
    best = min(row["test_loss"] for row in result.history)
    assert result.metrics["test_loss"] == pytest.approx(best, rel=1e-4)


def test_validation_split_is_evaluated_each_epoch_and_the_test_set_once(tiny, tmp_path):
    # Test labels shifted by one class: a test set seen by early stopping would stop at once.
    wrong = kdata.ImageData("wrong", tiny.x_train, tiny.y_train, tiny.x_test,
                            (tiny.y_test + 1) % 4, tiny.class_names)
    r = _recipe(epochs=3, lr=0.01)
    result = train.fit(_model(r), wrong, r, out=str(tmp_path), seed=0, verbose=0,
                       validation=0.25, early_stopping=1)
    for row in result.history:
        assert {"val_loss", "val_accuracy"} <= set(row) and "test_loss" not in row
    m = result.metrics
    assert m["num_validation"] == 32 and m["num_train"] == 96 and m["epochs"] == 3
    assert m["val_accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])
    assert m["val_accuracy"] > 0.5 and m["test_accuracy"] < 0.5  # the shifted labels
    assert read_history(tmp_path / "history.csv")[0].keys() == result.history[0].keys()


@pytest.mark.parametrize("fraction, message", [
    (1.0, "validation must be a number in (0, 1); received 1.0"),
    (0.001, "validation=0.001 of 128 training examples leaves an empty"),
])
def test_bad_validation_fraction(tiny, fraction, message):
    r = _recipe(epochs=1)
    with pytest.raises(ValueError, match=re.escape(message)):
        train.fit(_model(r), tiny, r, verbose=0, validation=fraction)


def test_confusion_matrix_counts_the_test_set(tiny):
    r = _recipe(epochs=1)
    model = _model(r)
    train.fit(model, tiny, r, seed=0, verbose=0, jit_compile=False)
    cm = train.confusion_matrix(model, tiny)
    assert cm.shape == (4, 4) and cm.sum() == tiny.num_test
    assert np.array_equal(cm.sum(axis=1), np.bincount(tiny.y_test, minlength=4))
    x_test, y_test = next(iter(trainer.test_dataset(model, tiny, batch_size=tiny.num_test)))
    predicted = np.asarray(model.predict(np.asarray(x_test), verbose=0)).argmax(axis=-1)
    expected = np.bincount(np.asarray(y_test) * 4 + predicted, minlength=16).reshape(4, 4)
    assert tiny.num_test % 7  # batches of 7 leave a partial (padded) last batch
    assert np.array_equal(train.confusion_matrix(model, tiny, batch_size=7), expected)


def test_make_datasets_follow_the_model_input(tiny):
    r = _recipe(batch_size=16)
    model = models.build("vgg11", input_shape=(32, 32, 3), width_ratio=16,
                         hidden_units=8, num_classes=4)
    train_ds, test_ds = train.make_datasets(model, tiny, r)
    x, y = next(iter(train_ds))
    assert tuple(x.shape) == (16, 32, 32, 3) and tuple(y.shape) == (16,)
    assert math.ceil(tiny.num_test / 256) == len(list(test_ds))


@pytest.mark.parametrize("count,batch_size,expected", [
    (360, 64, 180),  # digits' test split: 2 x 180, not 256 + 104
    (10_000, 64, 250),  # MNIST's: 40 x 250
    (361, 64, 181),  # no even split: 181 + 180, still the fewest batches
    (100, 64, 100), (100, 512, 100), (1000, 512, 500), (0, 64, 256),
])
def test_test_batch_size_splits_evenly(count, batch_size, expected):
    assert trainer.test_batch_size(count, batch_size) == expected


def test_the_test_set_comes_in_batches_of_one_shape(tiny):
    model = models.build("lenet", input_shape=(28, 28, 1), num_classes=4)
    data = kdata.ImageData("quadrants", tiny.x_train, tiny.y_train, np.concatenate([tiny.x_test] * 10)[:300],
                           np.concatenate([tiny.y_test] * 10)[:300], tiny.class_names)
    for test_ds in (trainer.make_datasets(model, data, _recipe(batch_size=16))[1],
                    trainer.eval_dataset(model, data, _recipe(batch_size=16))):
        assert [len(y) for _, y in test_ds] == [150, 150]


@pytest.mark.parametrize("backend,expected", [("tensorflow", 8), ("jax", 8), ("torch", 1)])
def test_auto_steps_per_execution(backend, expected):
    assert train.resolve_steps_per_execution("auto", backend=backend) == expected
    assert train.resolve_steps_per_execution(1, backend=backend) == 1


@pytest.mark.parametrize("value,backend,message", [
    (0, "tensorflow", "steps_per_execution must be 'auto' or a positive integer; received 0"),
    ("8", "jax", "steps_per_execution must be 'auto' or a positive integer; received '8'"),
    (True, "jax", "received True"),
    (4, "torch", "steps_per_execution must be 1 or 'auto' with the torch backend"),
])
def test_bad_steps_per_execution(value, backend, message):
    with pytest.raises(ValueError, match=message):
        train.resolve_steps_per_execution(value, backend=backend)


def test_steps_per_execution_under_tf_distribution():
    assert train.resolve_steps_per_execution("auto", "tensorflow", distributed=True) == 1
    assert train.resolve_steps_per_execution("auto", "jax", distributed=True) == 8
    with pytest.raises(ValueError, match="1 or 'auto' with a tensorflow distribution"):
        train.resolve_steps_per_execution(8, "tensorflow", distributed=True)


def test_fit_compiles_with_auto_steps_per_execution(tiny):
    r = _recipe(epochs=1)
    model = _model(r)
    train.fit(model, tiny, r, seed=0, verbose=0)
    assert model.steps_per_execution == train.resolve_steps_per_execution("auto")


@pytest.mark.parametrize("backend, builtin_jit, explicit_jit", [
    ("tensorflow", False, True), ("jax", True, True), ("torch", False, False)])
def test_auto_jit_compile_follows_the_measured_table(backend, builtin_jit, explicit_jit):
    explicit = models.lenet(conv="explicit", input_shape=(28, 28, 1))
    builtin = models.lenet(conv="builtin", input_shape=(28, 28, 1))
    assert train.resolve_jit_compile("auto", explicit, backend, device="cpu") is explicit_jit
    assert train.resolve_jit_compile("auto", builtin, backend, device="cpu") is builtin_jit
    # unmeasured cases keep Keras's own choice
    assert train.resolve_jit_compile("auto", explicit, backend, device="gpu") == "auto"
    assert train.resolve_jit_compile("auto", explicit, backend, distributed=True) == "auto"
    assert train.resolve_jit_compile(False, explicit, backend) is False
    # XLA's compile time is paid back only by jobs of enough examples (epochs × training set)
    assert train.resolve_jit_compile("auto", explicit, backend, device="cpu", examples=10**6) is explicit_jit
    small_job = train.resolve_jit_compile("auto", explicit, backend, device="cpu", examples=21_555)
    assert small_job is (False if backend == "tensorflow" else explicit_jit)
    for (b, device, conv), choice in train.JIT_AUTO.items():  # each choice names its figure
        assert device in ("cpu", "gpu") and conv in ("builtin", "explicit")
        assert "ex/s" in choice.measured and isinstance(choice.value, bool)


def test_fit_sizes_auto_jit_compile_by_the_job(tiny):
    """fit passes its job's size (epochs × training examples) to the choice: 2 × 128 examples."""
    r = _recipe(epochs=2)
    keras.utils.set_random_seed(0)
    model = models.build("lenet", conv="explicit", input_shape=(16, 16, 1), num_classes=4)
    train.fit(model, tiny, r, seed=0, verbose=0)
    assert bool(model.jit_compile) is bool(train.resolve_jit_compile("auto", model, examples=2 * tiny.num_train))
    if keras.backend.backend() == "tensorflow":
        assert model.jit_compile is False and train.resolve_jit_compile("auto", model) is True


@pytest.mark.parametrize("value", ["on", None, 1.5])
def test_bad_jit_compile(value):
    model = models.lenet(conv="explicit", input_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="jit_compile must be 'auto', True or False"):
        train.resolve_jit_compile(value, model)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="XLA for 'auto' is a TensorFlow-only decision (JAX always compiles)")
def test_fit_compiles_explicit_tensorflow_models_with_xla_for_large_jobs(tiny, monkeypatch):
    """A job of at least ``min_examples`` (here lowered to this one's 128) trains under XLA."""
    key = ("tensorflow", "cpu", "explicit")
    monkeypatch.setitem(train.JIT_AUTO, key, train.JIT_AUTO[key]._replace(min_examples=tiny.num_train))
    r = _recipe(epochs=1)
    keras.utils.set_random_seed(0)
    model = models.build(r.model, conv="explicit", input_shape=(16, 16, 1), num_classes=4)
    result = train.fit(model, tiny, r, seed=0, verbose=0)
    assert model.jit_compile is True
    assert np.isfinite(result.metrics["train_loss"])


def test_progress_bar_never_counts_past_the_epoch(tiny, capsys):
    # 128 examples / batch 12 = 11 steps, 4 per compiled call: from the second epoch on, Keras's
    # own bar shows 12/11 (keras-team/keras#20861). PyTorch runs one batch per call (kcnn refuses
    # more there), so that backend checks the plain bar.
    recipe = _recipe(epochs=3, batch_size=12)
    per_call = 1 if keras.backend.backend() == "torch" else 4
    train.fit(_model(recipe), tiny, recipe, verbose=1, steps_per_execution=per_call)
    counts = re.findall(r"(\d+)/(\d+)", capsys.readouterr().out)
    assert counts, "no progress bar printed"
    assert all(int(done) <= int(total) for done, total in counts), counts
    assert ("11", "11") in counts


@pytest.mark.parametrize("bar, seen", [(keras.callbacks.ProgbarLogger, 12), (train.ProgressBar, 11)])
def test_progress_bar_clamps_the_last_compiled_call(bar, seen, capsys):
    # What Keras reports when an 11-step epoch ends inside a 4-step compiled call: batch index 11.
    logger = bar()
    logger.set_params({"epochs": 1, "steps": 11, "verbose": 1})
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(11, {"loss": 1.0})
    assert logger.seen == seen


def _all(ds):
    return np.concatenate([np.asarray(x) for x, _ in ds])


def test_augmentation_reaches_the_training_split_only(tiny, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("a", "b", "c", "d"):
        (tmp_path / c).mkdir()
        for i in range(3):
            size = tuple(int(v) for v in rng.integers(10, 30, 2))
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.png")
    folder = kdata.load(f"folder:{tmp_path}", test_fraction=0.34)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    augmented = _recipe(augment="flip-crop-color")
    plain = _recipe(augment="none")
    for source in (tiny, folder):  # arrays (every backend: tf.data when augmenting) and files
        train_a, test_a = train.make_datasets(model, source, augmented, seed=1)
        train_p, test_p = train.make_datasets(model, source, plain, seed=1)
        again, _ = train.make_datasets(model, source, augmented, seed=1)
        np.testing.assert_array_equal(_all(test_a), _all(test_p))
        first = _all(train_a)
        assert first.shape == _all(train_p).shape and first.shape[1:] == (16, 16, 1)
        assert not np.allclose(np.sort(first.ravel()), np.sort(_all(train_p).ravel()))
        np.testing.assert_array_equal(first, _all(again))
