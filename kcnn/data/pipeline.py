"""The input pipeline: ``tf.data`` batches for ``model.fit`` (every backend) and validation splits."""
from __future__ import annotations

import numpy as np

from kcnn.data.arrays import as_images, as_labels, check_pair, validation_indices
from kcnn.data.augment import augment_batches, check_augment
from kcnn.data.image_data import ImageData
from kcnn.data.resize import check_resize, resize_images


def split_validation(data: ImageData, fraction: float = 0.1, seed: int = 0):
    """Hold out ``fraction`` of ``data``'s training examples for validation.

    Returns ``(train, val)``: ``train`` keeps the remaining training examples
    and the original test set; ``val`` holds the held-out examples in both its
    train and test fields (so ``val.x_test, val.y_test`` is the validation
    set). Stratified by class when every class has enough examples. A ``folder:DIR`` data
    set (:class:`kcnn.data.folder.FolderData`) is split by file, nothing decoded.
    """
    from kcnn.data.folder import FolderData, split_folder_validation

    if not isinstance(data, (ImageData, FolderData)):
        raise TypeError(f"data must be an ImageData or FolderData; received {type(data).__name__}")
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be a number in (0, 1); received {fraction!r}")
    if isinstance(data, FolderData):
        return split_folder_validation(data, fraction, seed)
    tr, va = validation_indices(data.y_train, fraction, seed)
    train = ImageData(data.name, data.x_train[tr], data.y_train[tr],
                      data.x_test, data.y_test, data.class_names)
    xv, yv = data.x_train[va], data.y_train[va]
    val = ImageData(f"{data.name} (validation)", xv, yv, xv, yv, data.class_names)
    return train, val


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    try:
        h, w = (int(v) for v in image_size)
        ok = h > 0 and w > 0 and all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"image_size must be None, a positive int or a pair (height, width) of "
            f"positive ints; received {image_size!r}"
        )
    return h, w


def make_dataset(x, y, *, batch_size, image_size=None, channels=None, shuffle=False,
                 seed=0, drop_remainder=False, resize="stretch", augment=None):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` for ``model.fit``.

    Images come out float32 NHWC in [0, 1] (uint8 divided by 255, floats as
    they are), converted to ``channels`` (1 -> 3 by repetition, 3 -> 1 by
    luminance) and resized to ``image_size`` with bilinear interpolation on
    the fly, one batch at a time; labels come out int64. With ``shuffle`` the
    order is reshuffled every epoch from ``seed`` (same seed, same orders).

    Args:
        x: images ``(n, H, W)`` or ``(n, H, W, C)``, uint8 or float in [0, 1].
        y: integer (or one-hot) labels, ``n`` of them.
        batch_size: examples per batch (positive int).
        image_size: ``None`` (keep), an int or ``(height, width)``.
        channels: ``None`` (keep), 1 or 3.
        shuffle: reshuffle the examples every epoch.
        seed: shuffle seed.
        drop_remainder: drop the last, smaller batch.
        resize: ``"stretch"`` (default), ``"crop"`` or ``"pad"`` to a different aspect ratio
            (see :mod:`kcnn.data.resize`).
        augment: an augmentation preset applied to every batch (:mod:`kcnn.data.augment`,
            seeded from ``seed``); for training data only.
    """
    import tensorflow as tf

    from kcnn.export.checks import check_positive

    batch_size = check_positive("batch_size", batch_size, integer=True)
    size = _check_image_size(image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be None, 1 or 3; received {channels!r}")
    resize = check_resize(resize)
    augment = check_augment(augment)
    x = as_images(x, "make_dataset: x")
    y = as_labels(y, "make_dataset: y")
    check_pair(x, y, "make_dataset: x/y")
    n, in_h, in_w, in_c = x.shape
    scale = x.dtype == np.uint8

    with tf.device("/CPU:0"):
        images = tf.constant(x)
        labels = tf.constant(y)

    def batch_of(indices):
        # Vectorized per batch: gather, scale, convert channels, resize.
        xb = tf.cast(tf.gather(images, indices), tf.float32)
        if scale:
            xb = xb / 255.0
        if channels == 1 and in_c == 3:
            xb = tf.image.rgb_to_grayscale(xb)  # before resizing: less to resize
        if size is not None and size != (in_h, in_w):
            xb = resize_images(xb, size, resize)
        if channels == 3 and in_c == 1:
            xb = tf.image.grayscale_to_rgb(xb)  # after resizing: less to resize
        return xb, tf.gather(labels, indices)

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return augment_batches(ds, augment, seed).prefetch(tf.data.AUTOTUNE)
