"""kcnn.data.batches: in-memory NumPy batches (JAX/PyTorch training input) and their selection."""
import keras
import numpy as np
import pytest

from kcnn import data, models
from kcnn import training as train
from kcnn.data import batches
from kcnn.training import recipes

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8, 1), dtype=np.uint8)
    y = np.arange(30) % 3
    return data.ImageData("small", x[:20], y[:20], x[20:], y[20:], ("a", "b", "c"))


def test_preprocess_equals_the_tf_data_pipeline(small):
    x, y = batches.preprocess(small.x_train, small.y_train, image_size=(12, 10), channels=3)
    xb, yb = next(data.make_dataset(small.x_train, small.y_train, batch_size=20,
                                    image_size=(12, 10), channels=3).as_numpy_iterator())
    assert x.dtype == np.float32 and x.shape == (20, 12, 10, 3)
    np.testing.assert_array_equal(x, xb)
    np.testing.assert_array_equal(y, yb)


def test_batches_cover_every_example_once_per_epoch():
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    y = np.arange(10)
    ds = batches.ArrayBatches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(ds) == 3
    orders = []
    for _ in range(3):
        ds.on_epoch_begin()
        epoch = [ds[i] for i in range(len(ds))]
        assert [len(b[1]) for b in epoch] == [4, 4, 2]
        labels = np.concatenate([b[1] for b in epoch])
        assert sorted(labels) == list(range(10))
        for xb, yb in epoch:  # images stay paired with their labels
            np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)
        orders.append(labels.tolist())
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled
    again = batches.ArrayBatches(x, y, batch_size=4, shuffle=True, seed=3)
    again.on_epoch_begin()
    assert np.concatenate([again[i][1] for i in range(3)]).tolist() == orders[0]  # same seed


def test_unshuffled_batches_keep_the_order():
    x, y = np.zeros((5, 2, 2, 1), np.float32), np.arange(5)
    ds = batches.ArrayBatches(x, y, batch_size=2)
    assert [ds[i][1].tolist() for i in range(len(ds))] == [[0, 1], [2, 3], [4]]
    assert len(list(ds)) == 3  # iterable (sequence protocol ends with IndexError)
    with pytest.raises(IndexError, match="batch index 3 out of range for 3 batches"):
        ds[3]


@pytest.mark.parametrize("kwargs,message", [
    (dict(batch_size=0), "batch_size must be a positive integer; received batch_size=0"),
    (dict(batch_size=True), "batch_size must be a positive integer; received batch_size=True"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        batches.ArrayBatches(np.zeros((2, 1, 1, 1)), np.zeros(2), **kwargs)
    with pytest.raises(ValueError, match="x and y differ in length: 2 images, 3 labels"):
        batches.ArrayBatches(np.zeros((2, 1, 1, 1)), np.zeros(3), batch_size=1)


@pytest.mark.parametrize("in_memory", ["auto", True, False])
def test_make_datasets_choice(small, in_memory):
    model = models.build("lenet", input_shape=(16, 16, 1), num_classes=3)
    recipe = recipes.get("modern", "lenet", batch_size=8, image_size=16)
    train_ds, test_ds = train.make_datasets(model, small, recipe, in_memory=in_memory)
    arrays = in_memory is True or (in_memory == "auto" and BACKEND != "tensorflow")
    assert isinstance(train_ds, batches.ArrayBatches) == arrays
    assert isinstance(test_ds, batches.ArrayBatches) == arrays
    x, y = next(iter(train_ds))
    assert tuple(x.shape) == (8, 16, 16, 1) and tuple(y.shape) == (8,)


def test_make_datasets_rejects_a_bad_in_memory(small):
    model = models.build("lenet", input_shape=(16, 16, 1), num_classes=3)
    recipe = recipes.get("modern", "lenet", batch_size=8, image_size=16)
    with pytest.raises(ValueError, match="in_memory must be 'auto', True or False"):
        train.make_datasets(model, small, recipe, in_memory="yes")


def test_large_data_stays_on_tf_data(small, monkeypatch):
    monkeypatch.setattr(batches, "MAX_IN_MEMORY_BYTES", 100)
    model = models.build("lenet", input_shape=(16, 16, 1), num_classes=3)
    recipe = recipes.get("modern", "lenet", batch_size=8, image_size=16)
    train_ds, _ = train.make_datasets(model, small, recipe)
    assert not isinstance(train_ds, batches.ArrayBatches)
