"""``mnist``, ``fashion_mnist``, ``cifar10``: ``keras.datasets``, downloaded once into Keras's cache."""
from __future__ import annotations

import os
import tempfile

from kcnn.data.arrays import DataError
from kcnn.data.digits import DIGIT_NAMES
from kcnn.data.image_data import from_arrays

FASHION_MNIST_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

KERAS_DATASETS = {
    # name: (files Keras looks for under its datasets cache, offline alternative)
    "mnist": (
        ("mnist.npz",),
        "or pass 'npz:PATH' (arrays x_train, y_train, x_test, y_test) or 'idx:DIR' (the IDX files)",
    ),
    "fashion_mnist": (
        tuple(
            os.path.join("fashion-mnist", f)
            for f in ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                      "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
        ),
        "or pass 'idx:DIR' (a folder holding those IDX files) or 'npz:PATH'",
    ),
    "cifar10": (
        ("cifar-10-batches-py-target_archive",),
        "(the file cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "saved under that name), or pass 'npz:PATH' (arrays x_train, y_train, x_test, y_test)",
    ),
}
_KERAS_NAMES = {"mnist": DIGIT_NAMES, "fashion_mnist": FASHION_MNIST_NAMES, "cifar10": CIFAR10_NAMES}


def keras_cache_dir() -> str:
    """The folder ``keras.utils.get_file`` caches data sets in.

    ``$KERAS_HOME/datasets`` (as read when Keras was imported), else
    ``~/.keras/datasets``; Keras falls back to ``/tmp/.keras/datasets`` when
    that folder is not writable.
    """
    try:
        from kcnn.layers.keras_compat import keras_home

        base = keras_home()
    except ImportError:  # private accessor moved: mirror its logic
        base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    base = os.path.expanduser(base)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return os.path.join(base, "datasets")


def load(name, *, seed=0, test_fraction=0.2):
    """``keras.datasets.<name>.load_data()``, with an offline-friendly error message."""
    import keras

    loader = getattr(keras.datasets, name).load_data
    try:
        (xtr, ytr), (xte, yte) = loader()
    except Exception as e:  # offline download, corrupt cache, ...: one clear message
        files, alternative = KERAS_DATASETS[name]
        cache = keras_cache_dir()
        paths = ", ".join(os.path.join(cache, f) for f in files)
        raise DataError(
            f"could not load {name!r} with keras.datasets.{name}.load_data() "
            f"({type(e).__name__}: {e}). Keras downloads it on first use and then reads "
            f"its cache; without network access place {paths} there (set KERAS_HOME to "
            f"use another cache folder), {alternative}"
        ) from e
    if name == "cifar10" and xtr.ndim == 4 and xtr.shape[1] == 3 and xtr.shape[-1] != 3:
        # Keras returns channels-first arrays when image_data_format() says so.
        xtr, xte = xtr.transpose(0, 2, 3, 1), xte.transpose(0, 2, 3, 1)
    return from_arrays(name, xtr, ytr, xte, yte, _KERAS_NAMES[name],
                       where=f"keras.datasets.{name}")
