"""Tests for kcnn.data / kcnn.data.arrays: every spec kind, bad data, tf.data pipeline."""
import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import urllib.error

import keras
import numpy as np
import pytest
from PIL import Image

from kcnn import data
from kcnn.data import DataError, ImageData


# --------------------------------------------------------------------------- helpers
def write_idx(path, arr, magic=None, gz=False, truncate=0):
    """Write an IDX file of unsigned bytes (the MNIST format) by hand."""
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.tobytes()
    if truncate:
        payload = payload[:-truncate]
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(payload)


def idx_names(gz):
    sfx = ".gz" if gz else ""
    return {k: f"{stem}{sfx}" for k, stem in (
        ("x_train", "train-images-idx3-ubyte"), ("y_train", "train-labels-idx1-ubyte"),
        ("x_test", "t10k-images-idx3-ubyte"), ("y_test", "t10k-labels-idx1-ubyte"))}


def small_arrays(rng, n_train=30, n_test=12, shape=(6, 5), classes=4):
    return dict(
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=np.arange(n_train) % classes,
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=np.arange(n_test) % classes,
    )


def write_idx_dir(directory, arrays, gz):
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in idx_names(gz).items():
        write_idx(directory / name, arrays[key], gz=gz)


def save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def class_image(label, i, shape):
    """A deterministic uint8 image whose pixels encode its class and index."""
    base = np.full(shape, 40 * label + 3 * i, dtype=np.uint8)
    base[0, 0] = 250 - i  # some variation inside the image
    return base


# --------------------------------------------------------------------------- digits
def test_digits_split_is_stratified_and_seeded():
    d = data.load("digits")
    assert isinstance(d, ImageData)
    assert d.num_train + d.num_test == 1797
    assert d.num_test == pytest.approx(0.2 * 1797, abs=1)
    assert d.image_shape == (8, 8, 1) and d.x_train.dtype == np.uint8
    assert d.y_train.dtype == np.int64 and d.y_train.shape == (d.num_train,)
    assert d.class_names == tuple("0123456789") and d.num_classes == 10
    assert d.x_train.max() == 255 and d.x_train.min() == 0
    # stratified: every class's share in test within one example of 20 %
    counts_all = np.bincount(np.concatenate([d.y_train, d.y_test]), minlength=10)
    counts_test = np.bincount(d.y_test, minlength=10)
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)
    again = data.load("digits", seed=0)
    assert np.array_equal(again.x_test, d.x_test) and np.array_equal(again.y_test, d.y_test)
    other = data.load("digits", seed=1, test_fraction=0.5)
    assert other.num_test == pytest.approx(1797 / 2, abs=1)
    assert not np.array_equal(data.load("digits", seed=1).y_test, d.y_test)


def test_digits_pixels_are_sklearn_values_rescaled():
    from sklearn.datasets import load_digits

    ref = load_digits()
    d = data.load("digits", test_fraction=0.1)
    images = np.concatenate([d.x_train, d.x_test])[..., 0].astype(np.int64)
    expected = np.round(ref.images * 255 / 16).astype(np.int64)
    # the same multiset of images (split order is shuffled)
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1).astype(np.uint8)))  # noqa: E731
    assert key(images) == key(expected)


# --------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize(
    "spec, n, shape",
    [("synthetic", 2000, (28, 28, 1)), ("synthetic:100", 100, (28, 28, 1)),
     ("synthetic:50:16x12", 50, (16, 12, 1)), ("Synthetic:40:8x8x3", 40, (8, 8, 3))],
)
def test_synthetic_shapes_and_determinism(spec, n, shape):
    d = data.load(spec, seed=3)
    assert d.num_train + d.num_test == n
    assert d.image_shape == shape and d.x_train.dtype == np.uint8
    assert set(np.unique(np.concatenate([d.y_train, d.y_test]))) <= set(range(10))
    again = data.load(spec, seed=3)
    assert np.array_equal(again.x_train, d.x_train) and np.array_equal(again.y_train, d.y_train)
    assert not np.array_equal(data.load(spec, seed=4).x_train, d.x_train)


def test_synthetic_classes_differ_by_orientation():
    # Class k is a grating at angle 180*k/10 degrees: the dominant orientation of
    # the image gradient (a hand-written feature, not a model) recovers the class.
    d = data.synthetic(400, image_shape=(32, 32, 1), seed=0)
    x = d.x_train[..., 0].astype(np.float64)
    gy, gx = np.gradient(x, axis=(1, 2))
    # doubled-angle mean of gradient directions = grating orientation
    ang = 0.5 * np.angle(np.sum((gx + 1j * gy) ** 2, axis=(1, 2)))
    predicted = np.round((ang % np.pi) / np.pi * 10).astype(int) % 10
    assert np.mean(predicted == d.y_train) > 0.8


@pytest.mark.parametrize("spec", ["synthetic:abc", "synthetic:10:3x3", "synthetic:10:8x8x2",
                                  "synthetic:1", "synthetic:10:8x8:9"])
def test_synthetic_bad_specs(spec):
    with pytest.raises(DataError, match="synthetic"):
        data.load(spec)


# --------------------------------------------------------------------------- npz
@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("channel_axis", [False, True])
def test_npz_int_and_one_hot_labels(tmp_path, rng, one_hot, channel_axis):
    a = small_arrays(rng)
    saved = dict(a)
    if channel_axis:
        saved["x_train"], saved["x_test"] = a["x_train"][..., None], a["x_test"][..., None]
    if one_hot:
        saved["y_train"] = np.eye(4, dtype=np.float32)[a["y_train"]]
        saved["y_test"] = np.eye(4, dtype=np.float32)[a["y_test"]]
    path = tmp_path / "tiny.npz"
    np.savez(path, **saved)
    d = data.load(f"npz:{path}")
    assert d.name == f"npz:{path}"
    assert d.image_shape == (6, 5, 1) and d.x_train.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train[..., 0], a["x_train"])
    np.testing.assert_array_equal(d.y_train, a["y_train"])
    np.testing.assert_array_equal(d.y_test, a["y_test"])
    assert d.y_train.dtype == np.int64
    assert d.class_names == ("0", "1", "2", "3")


def test_npz_float_rgb_images_and_class_names(tmp_path, rng):
    x_train = rng.random((10, 4, 4, 3))
    x_test = rng.random((5, 4, 4, 3))
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=x_train, y_train=np.arange(10) % 3, x_test=x_test,
             y_test=np.array([[0], [1], [2], [0], [1]]), class_names=np.array(["cat", "dog", "eel"]))
    d = data.load(f"npz:{path}")
    assert d.x_train.dtype == np.float32 and d.image_shape == (4, 4, 3)
    np.testing.assert_allclose(d.x_test, x_test.astype(np.float32))
    assert d.class_names == ("cat", "dog", "eel") and d.num_classes == 3
    assert d.y_test.tolist() == [0, 1, 2, 0, 1]


def test_npz_path_with_tilde(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    np.savez(tmp_path / "t.npz", **small_arrays(rng))
    assert data.load("npz:~/t.npz").num_train == 30


def _bad_npz(tmp_path, rng, **changes):
    a = small_arrays(rng)
    a.update(changes)
    a = {k: v for k, v in a.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **a)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(y_test=None), r"missing array\(s\) y_test"),
        (dict(y_train=np.arange(29) % 4), "mismatched lengths: 30 images but 29 labels"),
        (dict(y_train=np.arange(30) % 4 - 1), "labels must be >= 0; found label -1"),
        (dict(y_test=np.arange(12) % 4, class_names=np.array(["a", "b"])),
         "label 3 is out of range for 2 classes"),
        (dict(x_test=np.zeros((12, 7, 5), np.uint8)), "images of inconsistent shape"),
        (dict(x_train=np.zeros((30, 6, 5, 2), np.uint8)), "1 or 3 channels"),
        (dict(x_train=np.zeros((30, 6), np.uint8)), r"must have shape \(n, H, W\)"),
        (dict(x_train=np.full((30, 6, 5), 2.0)), r"float pixel values must lie in \[0, 1\]"),
        (dict(x_train=np.full((30, 6, 5), 300, np.int32)), "must lie in 0..255"),
        (dict(y_train=np.full((30, 4), 0.5)), "one-hot"),
        (dict(y_train=np.arange(30) * 0.5), "whole numbers"),
        (dict(class_names=np.zeros(3)), "class_names must be a 1-D array of strings"),
        (dict(x_train=np.zeros((0, 6, 5), np.uint8), y_train=np.zeros(0, int)), "no images"),
    ],
)
def test_npz_bad_data(tmp_path, rng, changes, message):
    path = _bad_npz(tmp_path, rng, **changes)
    with pytest.raises(DataError, match=message) as e:
        data.load(f"npz:{path}")
    assert str(path) in str(e.value)


def test_npz_missing_file_and_not_npz(tmp_path):
    with pytest.raises(DataError, match="npz file not found: .*nope.npz"):
        data.load(f"npz:{tmp_path / 'nope.npz'}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="junk.npz"):
        data.load(f"npz:{junk}")


def test_npz_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros((2, 2)), np.zeros((3, 3))]
    np.savez(path, x_train=obj, y_train=np.arange(2), x_test=obj, y_test=np.arange(2))
    with pytest.raises(DataError, match="never loads") as raised:
        data.load(f"npz:{path}")
    assert "allow_pickle" not in str(raised.value) and "unsafe" not in str(raised.value)


@pytest.mark.parametrize("content", [b"\0" * 4096, b"", b"PK\3\4 truncated"])
def test_npz_that_is_not_a_zip_is_named_as_such(tmp_path, content):
    path = tmp_path / "zeros.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not an npz file|not a readable npz") as raised:
        data.load(f"npz:{path}")
    assert "pickle" not in str(raised.value) and str(path) in str(raised.value)


@pytest.mark.parametrize("label", [10**9, 2**62, 100_000])
def test_a_huge_label_is_refused_before_building_a_class_list(tmp_path, rng, label):
    a = small_arrays(rng)
    a["y_train"] = a["y_train"].astype(np.int64)
    a["y_train"][3] = label
    path = tmp_path / "huge.npz"
    np.savez(path, **a)
    with pytest.raises(DataError, match=rf"{path}: y_train: label {label} is too large"):
        data.load(f"npz:{path}")


def test_labels_beyond_the_class_names_name_the_label(tmp_path, rng):
    a = small_arrays(rng)
    a["y_train"] = a["y_train"].astype(np.int64)
    a["y_train"][0] = 10**9
    path = tmp_path / "named.npz"
    np.savez(path, **a, class_names=np.array([str(i) for i in range(10)]))
    with pytest.raises(DataError, match=r"y_train: label 1000000000 is out of range for 10 classes"):
        data.load(f"npz:{path}")


@pytest.mark.parametrize("names, fragment", [(["a", "b", "a"], "repeated: 'a'"),
                                             (["a", " ", "c"], "empty strings")])
def test_class_names_must_be_distinct_and_non_empty(rng, names, fragment):
    x = rng.integers(0, 255, (6, 4, 4, 1), dtype=np.uint8)
    y = np.arange(6) % 3
    with pytest.raises(DataError, match=fragment):
        ImageData("d", x, y, x, y, tuple(names))


# --------------------------------------------------------------------------- idx
@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory(tmp_path, rng, gz):
    a = small_arrays(rng, shape=(7, 6), classes=10)
    write_idx_dir(tmp_path / "idx", a, gz)
    d = data.load(f"idx:{tmp_path / 'idx'}")
    np.testing.assert_array_equal(d.x_train[..., 0], a["x_train"])
    np.testing.assert_array_equal(d.x_test[..., 0], a["x_test"])
    np.testing.assert_array_equal(d.y_train, a["y_train"])
    assert d.image_shape == (7, 6, 1) and d.class_names == tuple("0123456789")


def test_idx_original_dotted_names_and_class_names_file(tmp_path, rng):
    a = small_arrays(rng)
    names = {"x_train": "train-images.idx3-ubyte", "y_train": "train-labels.idx1-ubyte",
             "x_test": "t10k-images.idx3-ubyte", "y_test": "t10k-labels.idx1-ubyte"}
    for key, name in names.items():
        write_idx(tmp_path / name, a[key])
    (tmp_path / "class_names.txt").write_text("zero\none\ntwo\nthree\n")
    d = data.load(f"idx:{tmp_path}")
    assert d.class_names == ("zero", "one", "two", "three")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "key, problem, message",
    [
        ("x_train", dict(magic=2049), "bad IDX magic number 2049 .*expected 2051"),
        ("y_test", dict(magic=2051), "bad IDX magic number 2051 .*expected 2049"),
        ("x_test", dict(magic=0x0D03), "bad IDX magic number"),  # float IDX, not ubyte
        ("x_train", dict(truncate=5), r"declares dimensions \(30, 6, 5\) \(900 bytes .* 895 bytes"),
        ("y_train", dict(arr=np.arange(29) % 4), "mismatched lengths: 30 images but 29 labels"),
        ("x_train", dict(missing=True), "missing IDX file train-images-idx3-ubyte"),
    ],
)
def test_idx_bad_files(tmp_path, rng, gz, key, problem, message):
    a = small_arrays(rng)
    write_idx_dir(tmp_path, a, gz)
    path = tmp_path / idx_names(gz)[key]
    if problem.get("missing"):
        path.unlink()
    else:
        write_idx(path, problem.get("arr", a[key]), magic=problem.get("magic"), gz=gz,
                  truncate=problem.get("truncate", 0))
    with pytest.raises(DataError, match=message) as e:
        data.load(f"idx:{tmp_path}")
    assert str(tmp_path) in str(e.value)


def test_idx_missing_directory(tmp_path):
    with pytest.raises(DataError, match="idx directory not found"):
        data.load(f"idx:{tmp_path / 'absent'}")


# --------------------------------------------------------------------------- folder
def make_folder(root, classes=("cat", "dog", "eel"), per_class=5, shape=(6, 5)):
    for label, c in enumerate(classes):
        for i in range(per_class):
            save_png(root / c / f"{i}.png", class_image(label, i, shape))


def _folder_images(d, split, size):
    """(images uint8, labels) of one split, streamed at ``size`` without resizing anything."""
    xs, ys = [], []
    for x, y in d.dataset(split, batch_size=64, image_size=size, shuffle=False):
        xs.append(np.round(np.asarray(x) * 255).astype(np.uint8))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


def _check_folder_pixels(d, shape):
    for split in ("train", "test"):
        x, y = _folder_images(d, split, shape[:2])
        assert x.shape[1:] == shape
        for img, label in zip(x, y):
            i = (int(img[1, 1, 0]) - 40 * int(label)) // 3
            np.testing.assert_array_equal(img[..., 0], class_image(int(label), i, shape[:2]))


def test_folder_split_by_seed(tmp_path):
    make_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    d = data.load(f"folder:{tmp_path / 'imgs'}", seed=1, test_fraction=0.2)
    assert isinstance(d, data.FolderData)
    assert d.class_names == ("cat", "dog", "eel")
    assert d.num_train == 12 and d.num_test == 3
    assert d.channels == 1 and d.image_shape == (None, None, 1)  # grayscale PNGs stay gray
    _check_folder_pixels(d, (6, 5, 1))
    assert len(set(d.train_files + d.test_files)) == 15  # every file exactly once
    again = data.load(f"folder:{tmp_path / 'imgs'}", seed=1, test_fraction=0.2)
    assert again.test_files == d.test_files
    other = data.load(f"folder:{tmp_path / 'imgs'}", seed=2, test_fraction=0.2)
    assert other.test_files != d.test_files


def test_folder_with_train_and_test_subfolders_rgb(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for label, c in enumerate(("a", "b")):
            for i in range(n):
                rgb = np.stack([class_image(label, i, (4, 7))] * 3, axis=-1)
                rgb[..., 1] = 7  # a real colour image
                save_png(tmp_path / split / c / f"{i}.png", rgb)
    d = data.load(f"folder:{tmp_path}")
    assert d.class_names == ("a", "b") and d.num_train == 8 and d.num_test == 4
    assert d.channels == 3
    x, _ = _folder_images(d, "train", (4, 7))
    assert np.all(x[..., 1] == 7)
    assert sorted(d.y_test.tolist()) == [0, 0, 1, 1]
    for img, label in zip(x, d.y_train):
        assert (int(img[1, 1, 0]) - 40 * int(label)) % 3 == 0


@pytest.mark.parametrize("problem", ["no_classes", "no_images", "no_readable", "missing",
                                     "too_few", "class_mismatch"])
def test_folder_bad_data(tmp_path, problem):
    root = tmp_path / "imgs"
    root.mkdir()
    message = {"no_classes": "empty folder: no class sub-folders",
               "no_images": "class folder 'cat' holds no image files",
               "no_readable": "class folder 'dog' holds no readable image",
               "missing": "image folder not found",
               "too_few": "too few",
               "class_mismatch": "different class sub-folders"}[problem]
    if problem == "no_images":
        (root / "cat").mkdir()
        (root / "cat" / "notes.txt").write_text("no images here")
    elif problem == "no_readable":
        make_folder(root, classes=("cat",), per_class=2)
        (root / "dog").mkdir()
        (root / "dog" / "0.jpg").write_bytes(b"not a jpeg")
    elif problem == "missing":
        root = tmp_path / "absent"
    elif problem == "too_few":
        make_folder(root, classes=("a", "b"), per_class=1)
    elif problem == "class_mismatch":
        make_folder(root / "train", classes=("a", "b"), per_class=1)
        make_folder(root / "test", classes=("a", "c"), per_class=1)
    with pytest.raises(DataError, match=message) as e:
        data.load(f"folder:{root}", test_fraction=0.2)
    assert str(root) in str(e.value)


# --------------------------------------------------------------------------- keras.datasets
@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A temporary Keras cache; downloads fail as they do offline.

    Keras reads KERAS_HOME once, at import, so the already-imported config is
    pointed at the same folder too.
    """
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is disabled in this test")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    return home / "datasets"


@pytest.fixture
def accept_test_files(monkeypatch):
    # Our small stand-in files cannot match the SHA-256 Keras pins for the real
    # mnist.npz / CIFAR archive; everything else in Keras's loader runs as is.
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "validate_file", lambda *a, **k: True)


def test_mnist_from_keras_cache(keras_home, accept_test_files, rng):
    a = small_arrays(rng, shape=(28, 28), classes=10)
    keras_home.mkdir(parents=True)
    np.savez(keras_home / "mnist.npz", **{k: v.astype(np.uint8) for k, v in a.items()})
    d = data.load("mnist")
    assert d.name == "mnist" and d.image_shape == (28, 28, 1)
    np.testing.assert_array_equal(d.x_train[..., 0], a["x_train"])
    np.testing.assert_array_equal(d.y_test, a["y_test"])
    assert d.class_names == tuple("0123456789")


def test_fashion_mnist_from_keras_cache(keras_home, rng):
    a = small_arrays(rng, shape=(28, 28), classes=10)
    write_idx_dir(keras_home / "fashion-mnist", a, gz=True)
    d = data.load("fashion-mnist")  # alias of fashion_mnist
    np.testing.assert_array_equal(d.x_test[..., 0], a["x_test"])
    np.testing.assert_array_equal(d.y_train, a["y_train"])
    assert d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert len(d.class_names) == 10


def _cifar_batch(labels):
    n = len(labels)
    pixels = np.empty((n, 3, 1024), np.uint8)
    for ch in range(3):  # channel planes R, G, B: value 20*label + channel
        pixels[:, ch, :] = (20 * labels + ch)[:, None]
    buf = io.BytesIO()
    pickle.dump({b"data": pixels.reshape(n, 3072), b"labels": labels.tolist()}, buf, protocol=4)
    return buf.getvalue()


def test_cifar10_from_keras_cache(keras_home, accept_test_files):
    keras_home.mkdir(parents=True)
    archive = keras_home / "cifar-10-batches-py-target_archive"
    test_labels = np.arange(20) % 10
    with tarfile.open(archive, "w") as tar:  # Keras's loader needs 5 batches of 10,000
        members = [(f"data_batch_{i}", np.arange(10000) % 10) for i in range(1, 6)]
        for name, labels in members + [("test_batch", test_labels)]:
            payload = _cifar_batch(labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    d = data.load("cifar10")
    assert d.num_train == 50000 and d.num_test == 20 and d.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(d.y_test, test_labels)
    assert d.y_train.shape == (50000,) and d.y_train.dtype == np.int64
    # channels last: pixel (i, j) of a label-3 image is (60, 61, 62)
    assert d.x_test[3, 5, 7].tolist() == [60, 61, 62]
    assert d.class_names[:3] == ("airplane", "automobile", "bird")


@pytest.mark.parametrize(
    "name, expected",
    [("mnist", "mnist.npz"),
     ("fashion_mnist", os.path.join("fashion-mnist", "train-labels-idx1-ubyte.gz")),
     ("cifar10", "cifar-10-batches-py-target_archive")],
)
def test_keras_dataset_offline_error(keras_home, name, expected):
    with pytest.raises(DataError) as e:
        data.load(name)
    msg = str(e.value)
    assert os.path.join(str(keras_home), expected) in msg
    assert "network is disabled" in msg and "KERAS_HOME" in msg
    assert "npz:PATH" in msg
    assert data.keras_cache_dir() == str(keras_home)


@pytest.mark.slow
def test_keras_home_env_in_fresh_process(tmp_path, rng):
    """KERAS_HOME set before Keras starts: real env-var resolution, no patched config."""
    home = tmp_path / "home"
    a = small_arrays(rng, shape=(28, 28), classes=10)
    write_idx_dir(home / "datasets" / "fashion-mnist", a, gz=True)
    script = textwrap.dedent("""
        import urllib.error
        from keras.src.utils import file_utils
        def offline(*a, **k):
            raise urllib.error.URLError("offline")
        file_utils.urlretrieve = offline
        from kcnn import data
        d = data.load("fashion_mnist")
        print(d.num_train, d.num_test, int(d.x_train.sum()))
        try:
            data.load("mnist")
        except data.DataError as e:
            print(e)
    """)
    env = dict(os.environ, KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert f"30 12 {int(a['x_train'].sum())}" in lines
    assert os.path.join(str(home), "datasets", "mnist.npz") in lines[-1]


# --------------------------------------------------------------------------- specs
@pytest.mark.parametrize("spec", ["imagenet", "digits:extra", "", "npz:", "csv:/tmp/x"])
def test_unknown_or_incomplete_spec(spec):
    with pytest.raises(DataError) as e:
        data.load(spec)
    assert spec in str(e.value)
    if spec in ("imagenet", "csv:/tmp/x"):
        for name in ("digits", "mnist", "fashion_mnist", "cifar10", "npz:PATH", "idx:DIR",
                     "folder:DIR", "synthetic"):
            assert name in str(e.value)


def test_available_and_bad_arguments():
    specs = data.available()
    assert specs[:4] == ["digits", "mnist", "fashion_mnist", "cifar10"]
    assert {"npz:PATH", "idx:DIR", "folder:DIR"} <= set(specs)
    assert any(s.startswith("synthetic") for s in specs)
    assert issubclass(DataError, ValueError)
    with pytest.raises(ValueError, match="test_fraction must be a number in"):
        data.load("digits", test_fraction=1.5)
    with pytest.raises(ValueError, match="spec must be a non-empty string"):
        data.load(None)
    with pytest.raises(ValueError, match="seed must be an int; received 'x'"):
        data.load("digits", seed="x")


# --------------------------------------------------------------------------- ImageData
def test_image_data_checks_and_properties(rng):
    x = rng.integers(0, 256, (5, 4, 3, 1), dtype=np.uint8)
    y = np.array([0, 1, 2, 0, 1])
    d = ImageData("t", x, y, x, y, ["a", "b", "c"])
    assert d.class_names == ("a", "b", "c") and d.num_classes == 3
    assert d.image_shape == (4, 3, 1) and d.num_train == 5
    assert "train=5" in repr(d) and "num_classes=3" in repr(d)
    with pytest.raises(AttributeError):
        d.name = "other"
    with pytest.raises(DataError, match="label 2 is out of range for 2 classes"):
        ImageData("t", x, y, x, y, ("a", "b"))
    with pytest.raises(DataError, match="mismatched lengths"):
        ImageData("t", x, y[:4], x, y, ("a", "b", "c"))
    with pytest.raises(DataError, match="int64"):
        ImageData("t", x, y.astype(np.int32), x, y, ("a", "b", "c"))
    with pytest.raises(DataError, match="inconsistent shape"):
        ImageData("t", x, y, x[:, :2], y, ("a", "b", "c"))


# --------------------------------------------------------------------------- split_validation
def test_split_validation():
    d = data.load("digits")
    train, val = data.split_validation(d, 0.25, seed=2)
    assert train.num_train + val.num_train == d.num_train
    assert val.num_train == round(0.25 * d.num_train)
    assert np.array_equal(val.x_test, val.x_train) and np.array_equal(val.y_test, val.y_train)
    assert train.x_test is d.x_test  # the test set is untouched
    rows = lambda a: set(map(bytes, a.reshape(len(a), -1)))  # noqa: E731
    assert rows(train.x_train) | rows(val.x_train) == rows(d.x_train)
    assert np.all(np.abs(np.bincount(val.y_train, minlength=10)
                         - 0.25 * np.bincount(d.y_train, minlength=10)) <= 1)  # stratified
    train2, val2 = data.split_validation(d, 0.25, seed=2)
    assert np.array_equal(val2.y_train, val.y_train)
    assert val.class_names == d.class_names
    with pytest.raises(ValueError, match="fraction must be a number in"):
        data.split_validation(d, 0.0)
    with pytest.raises(TypeError, match="ImageData"):
        data.split_validation((d.x_train, d.y_train), 0.1)


# --------------------------------------------------------------------------- make_dataset
def _collect(ds):
    xs, ys = zip(*[(xb.numpy(), yb.numpy()) for xb, yb in ds])
    return np.concatenate(xs), np.concatenate(ys)


def bilinear_reference(img, out_h, out_w):
    """NumPy bilinear resize with half-pixel centres (TF/d2l convention, no antialias)."""
    h, w = img.shape[:2]
    ys = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def test_make_dataset_scales_uint8_and_keeps_order(rng):
    x = rng.integers(0, 256, (10, 5, 4, 1), dtype=np.uint8)
    y = np.arange(10) % 3
    ds = data.make_dataset(x, y, batch_size=4)
    spec_x, spec_y = ds.element_spec
    assert tuple(spec_x.shape) == (None, 5, 4, 1) and spec_x.dtype.name == "float32"
    assert spec_y.dtype.name == "int64"
    batches = [xb.shape[0] for xb, _ in ds]
    assert batches == [4, 4, 2]
    xs, ys = _collect(ds)
    np.testing.assert_allclose(xs, x / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ys, y)
    assert [xb.shape[0] for xb, _ in data.make_dataset(x, y, batch_size=4, drop_remainder=True)] == [4, 4]


def test_make_dataset_floats_unscaled_and_3d_input(rng):
    x = rng.random((6, 3, 3)).astype(np.float32)
    xs, ys = _collect(data.make_dataset(x, np.eye(2)[np.arange(6) % 2], batch_size=4))
    np.testing.assert_allclose(xs[..., 0], x)
    np.testing.assert_array_equal(ys, np.arange(6) % 2)


@pytest.mark.parametrize("size, out", [(6, (6, 6)), ((10, 7), (10, 7)), ((3, 2), (3, 2))])
def test_make_dataset_resize_bilinear(rng, size, out):
    x = rng.integers(0, 256, (3, 5, 4, 1), dtype=np.uint8)
    xs, _ = _collect(data.make_dataset(x, np.zeros(3, int), batch_size=2, image_size=size))
    assert xs.shape == (3, *out, 1)
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    if out[0] >= 5:  # upsampling: no antialiasing question, exact bilinear
        for img, src in zip(xs, x / 255.0):
            np.testing.assert_allclose(img, bilinear_reference(src, *out), atol=1e-5)


@pytest.mark.parametrize("c_in, c_out", [(1, 3), (3, 1), (3, 3), (1, 1)])
def test_make_dataset_channels(rng, c_in, c_out):
    x = rng.integers(0, 256, (4, 3, 3, c_in), dtype=np.uint8)
    xs, _ = _collect(data.make_dataset(x, np.zeros(4, int), batch_size=4, channels=c_out,
                                       image_size=(6, 6)))
    assert xs.shape == (4, 6, 6, c_out)
    src = np.stack([bilinear_reference(img, 6, 6) for img in x / 255.0])
    if c_in == 1 and c_out == 3:
        expected = np.repeat(src, 3, axis=-1)
    elif c_in == 3 and c_out == 1:
        expected = src @ np.array([[0.2989], [0.5870], [0.1140]])  # ITU-R 601 luminance
    else:
        expected = src
    np.testing.assert_allclose(xs, expected, atol=1e-3)


def test_make_dataset_shuffle_is_seeded_and_reshuffles(rng):
    x = np.arange(64, dtype=np.uint8).reshape(64, 1, 1, 1)
    y = np.arange(64)
    ds = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=5)
    epoch1 = _collect(ds)[1]
    epoch2 = _collect(ds)[1]
    assert sorted(epoch1.tolist()) == list(range(64))
    assert not np.array_equal(epoch1, y)
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch
    same = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=5)
    assert np.array_equal(_collect(same)[1], epoch1)
    assert np.array_equal(_collect(same)[1], epoch2)
    other = data.make_dataset(x, y, batch_size=16, shuffle=True, seed=6)
    assert not np.array_equal(_collect(other)[1], epoch1)
    xs, ys = _collect(data.make_dataset(x, y, batch_size=16, shuffle=True, seed=5))
    np.testing.assert_allclose(xs[:, 0, 0, 0] * 255, ys)  # images travel with their labels


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(batch_size=0), "batch_size must be a positive integer; received batch_size=0"),
     (dict(batch_size=2.5), "batch_size must be a positive integer"),
     (dict(batch_size=2, image_size=(0, 4)), r"image_size must be None.*received \(0, 4\)"),
     (dict(batch_size=2, image_size="big"), "image_size must be None"),
     (dict(batch_size=2, channels=2), "channels must be None, 1 or 3; received 2")],
)
def test_make_dataset_bad_arguments(kwargs, message):
    x = np.zeros((4, 3, 3, 1), np.uint8)
    with pytest.raises(ValueError, match=message):
        data.make_dataset(x, np.zeros(4, int), **kwargs)


def test_make_dataset_bad_arrays():
    with pytest.raises(DataError, match="mismatched lengths: 4 images but 3 labels"):
        data.make_dataset(np.zeros((4, 3, 3, 1), np.uint8), np.zeros(3, int), batch_size=2)
    with pytest.raises(DataError, match=r"float pixel values must lie in \[0, 1\]"):
        data.make_dataset(np.full((4, 3, 3, 1), 255.0), np.zeros(4, int), batch_size=2)


def test_tiny_model_fits_on_make_dataset():
    d = data.load("digits")
    train = data.make_dataset(d.x_train[:256], d.y_train[:256], batch_size=64,
                              image_size=12, channels=3, shuffle=True)
    test = data.make_dataset(d.x_test[:64], d.y_test[:64], batch_size=64, image_size=12,
                             channels=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(d.num_classes),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(train, epochs=1, validation_data=test, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["val_accuracy"][0] <= 1.0
    assert model.predict(test, verbose=0).shape == (64, 10)


def test_an_empty_class_folder_is_refused_not_a_class(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / name / f"{i}.png")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"imgs/empty: class folder 'empty' holds no image files"):
        data.load(f"folder:{root}")


def test_a_tiff_named_png_is_read_by_its_content(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / name / f"{i}.png")
    Image.new("F", (8, 8), 0.5).save(root / "dog" / "odd.png", format="TIFF")
    d = data.load(f"folder:{root}", test_fraction=0.3)
    assert d.channels == 1 and not d.skipped_files
    assert str(root / "dog" / "odd.png") in d.train_files + d.test_files
