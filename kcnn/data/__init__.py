"""Image-classification data for kcnn: loading, validation and the input pipeline.

``load(spec)`` returns an :class:`ImageData` (NumPy arrays plus class names) from the source the spec
names (``registry.SOURCES``: one module per source)::

    digits            scikit-learn's 1,797 bundled 8x8 handwritten digits (no download)
    mnist             keras.datasets.mnist (downloaded and cached by Keras)
    fashion_mnist     keras.datasets.fashion_mnist
    cifar10           keras.datasets.cifar10
    npz:PATH          arrays x_train, y_train, x_test, y_test [, class_names]
    idx:DIR           MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...)
    folder:DIR        one sub-folder of images per class (DIR/train + DIR/test, or split)
    synthetic[:N[:HxW[xC]]]  deterministic generated images (smoke tests, benchmarks)

``make_dataset(x, y, batch_size=...)`` turns arrays into a batched ``tf.data`` pipeline of float32
images in [0, 1] (resized and channel-converted on the fly) that ``model.fit`` accepts under every
Keras backend; ``batches.ArrayBatches`` serves the same batches from memory.
"""
from kcnn.data.arrays import DataError
from kcnn.data.digits import DIGIT_NAMES
from kcnn.data.image_data import ImageData, from_arrays
from kcnn.data.keras_datasets import CIFAR10_NAMES, FASHION_MNIST_NAMES, keras_cache_dir
from kcnn.data.pipeline import make_dataset, split_validation
from kcnn.data.registry import SOURCES, available, load
from kcnn.data.synthetic import synthetic

__all__ = [
    "CIFAR10_NAMES", "DIGIT_NAMES", "DataError", "FASHION_MNIST_NAMES", "ImageData", "SOURCES",
    "available", "from_arrays", "keras_cache_dir", "load", "make_dataset", "split_validation",
    "synthetic",
]
