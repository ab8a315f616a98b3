"""In-memory NumPy batches for ``model.fit`` on the JAX and PyTorch backends.

Keras feeds a ``tf.data`` pipeline to a JAX or PyTorch model by converting every batch from a
TensorFlow tensor, which costs more than the LeNet training step itself on a small CPU
(``kcnn-bench --section torch``: NumPy input trained 2.3× faster on JAX). When the preprocessed
training set fits in ``MAX_IN_MEMORY_BYTES``, ``kcnn.training`` therefore preprocesses it once, with
the very same ``tf.data`` pipeline (so images are identical), and serves NumPy batches from a
``keras.utils.PyDataset``. TensorFlow keeps the ``tf.data`` pipeline, which it runs natively.
"""
from __future__ import annotations

import keras
import numpy as np

from kcnn.data.pipeline import make_dataset
from kcnn.export.checks import check_positive

MAX_IN_MEMORY_BYTES = 1 << 30  # preprocessed float32 images (train + test) kept in memory at most


def preprocessed_bytes(num_examples: int, image_size, channels: int) -> int:
    """Bytes of ``num_examples`` float32 images of ``image_size`` (h, w) and ``channels``."""
    height, width = image_size
    return int(num_examples) * height * width * channels * 4


def preprocess(x, y, *, image_size=None, channels=None, chunk=1024, resize="stretch"):
    """Images and labels as ``make_dataset`` yields them, gathered into two NumPy arrays."""
    images, labels = [], []
    for xb, yb in make_dataset(x, y, batch_size=chunk, image_size=image_size,
                               channels=channels, resize=resize).as_numpy_iterator():
        images.append(xb)
        labels.append(yb)
    return np.concatenate(images), np.concatenate(labels)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of in-memory arrays, reshuffled every epoch from ``seed`` when ``shuffle``.

    Each epoch's order is ``numpy.random.default_rng([seed, k]).permutation(n)`` for the k-th
    call of ``on_epoch_begin``: the same seed gives the same orders.

    Args:
        x: float32 images ``(n, H, W, C)``, already preprocessed.
        y: integer labels ``(n,)``.
        batch_size: examples per batch (the last batch may be smaller).
        shuffle: reshuffle the examples every epoch.
        seed: shuffle seed.
    """

    def __init__(self, x, y, *, batch_size, shuffle=False, seed=0):
        super().__init__()
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} images, {len(y)} labels")
        batch_size = check_positive("batch_size", batch_size, integer=True)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, bool(shuffle), int(seed)
        self.epoch = -1
        self._order = None
        self.on_epoch_begin()

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        if self._order is None:
            return self.x[window], self.y[window]
        chosen = np.sort(self._order[window])  # sorted: faster gathers, same batch contents
        return self.x[chosen], self.y[chosen]

    def on_epoch_begin(self):
        self.epoch += 1
        if self.shuffle:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
