"""Image-classification data for kcnn: loading, validation and the input pipeline.

``load(spec)`` returns an :class:`ImageData` (NumPy arrays plus class names) from the source the spec
names (``registry.SOURCES``: one module per source), or for ``folder:DIR`` a :class:`FolderData`
(the file list, decoded and resized as it streams from disk: :mod:`kcnn.data.stream`)::

    digits            scikit-learn's 1,797 bundled 8x8 handwritten digits (no download)
    mnist             keras.datasets.mnist (downloaded and cached by Keras)
    fashion_mnist     keras.datasets.fashion_mnist
    cifar10           keras.datasets.cifar10
    npz:PATH          arrays x_train, y_train, x_test, y_test [, class_names]
    idx:DIR           MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...)
    folder:DIR        one sub-folder of images per class, any size and kind (DIR/train +
                      DIR/test, or a seeded split); unreadable files skipped and listed
    synthetic[:N[:HxW[xC]]]  deterministic generated images (smoke tests, benchmarks)

``make_dataset(x, y, batch_size=...)`` turns arrays into a batched ``tf.data`` pipeline of float32
images in [0, 1] (resized and channel-converted on the fly) that ``model.fit`` accepts under every
Keras backend; ``batches.ArrayBatches`` serves the same batches from memory. Resizing to another
aspect ratio: ``resize="stretch" | "crop" | "pad"`` (:mod:`kcnn.data.resize`); augmentation of the
training split: ``augment=`` a preset of :data:`AUGMENT_PRESETS` (:mod:`kcnn.data.augment`).
"""
from kcnn.data.arrays import DataError
from kcnn.data.augment import AUGMENT_PRESETS, augmentation
from kcnn.data.digits import DIGIT_NAMES
from kcnn.data.folder import FolderData
from kcnn.data.image_data import ImageData, from_arrays
from kcnn.data.keras_datasets import CIFAR10_NAMES, FASHION_MNIST_NAMES, keras_cache_dir
from kcnn.data.pipeline import make_dataset, split_validation
from kcnn.data.registry import SOURCES, available, load
from kcnn.data.resize import RESIZE_MODES, resize_images
from kcnn.data.stream import folder_dataset
from kcnn.data.synthetic import synthetic

__all__ = [
    "AUGMENT_PRESETS", "CIFAR10_NAMES", "DIGIT_NAMES", "DataError", "FASHION_MNIST_NAMES",
    "FolderData", "ImageData", "RESIZE_MODES", "SOURCES", "augmentation", "available",
    "folder_dataset", "from_arrays", "keras_cache_dir", "load", "make_dataset", "resize_images",
    "split_validation", "synthetic",
]
