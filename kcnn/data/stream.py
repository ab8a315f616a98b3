"""The streaming input pipeline of ``folder:DIR``: list → decode → resize → batch → augment.

One ``tf.data`` pipeline per split, which ``model.fit`` consumes under every Keras backend::

    file paths (reshuffled every epoch from the seed, training split)
      → decode + resize, in parallel (``num_parallel_calls=AUTOTUNE``, order kept)
      → [cache() of the resized images when they fit ``cache_bytes``]
      → batch → augmentation (training split only) → prefetch

Memory holds the file list, a few batches in flight and, only within ``cache_bytes``, the cache:
it does not grow with the number of images beyond that budget.

Why the decoder is kcnn's own (:mod:`kcnn.export.images`, called through
``tf.numpy_function``) rather than ``tf.io.decode_image``: TensorFlow's decoder ignores EXIF
orientation (a phone photo taken upright trains sideways), reads no CMYK JPEGs, TIFF or WebP,
keeps 16-bit PNGs 16-bit and takes a GIF's first frame as a 4-D tensor — and a training image
must decode exactly as ``kcnn-predict`` and ``kcnn-serve`` will decode it later. Pillow
releases the GIL while it decodes, so the parallel map still uses every core. A JPEG is decoded
at a reduced scale (Pillow's ``draft``: 1/2, 1/4 or 1/8, done by the JPEG decoder itself) when it
stays at least as large as the model's input — large photos decode several times faster.

A file that fails to decode is dropped from the stream, warned about once and recorded in the
data set's :class:`~kcnn.data.folder.SkippedFiles`.
"""
from __future__ import annotations

import numpy as np

from kcnn.data.augment import augment_batches, check_augment
from kcnn.data.resize import check_resize, resize_images

#: Largest size of the resized float32 images a split may ``cache()`` in memory (bytes); above
#: it every epoch decodes from disk again.
CACHE_BYTES = 256 << 20


def _to_channels(array, channels):
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.shape[-1] == channels:
        return array
    if channels == 3:
        return np.repeat(array, 3, axis=-1)
    # Luminance weights of tf.image.rgb_to_grayscale (ITU-R 601), as make_dataset converts.
    gray = array.astype(np.float32) @ np.asarray([0.2989, 0.587, 0.114], np.float32)
    return np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., np.newaxis]


def decode_file(path, channels, *, min_side=None, skipped=None):
    """The image at ``path`` as uint8 ``(H, W, channels)``, or None (recorded in ``skipped``)
    when it cannot be decoded. ``min_side``: a JPEG may be decoded at a reduced scale as long as
    both sides stay at least this long."""
    import warnings

    from PIL import Image

    from kcnn.export import images

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                if min_side and image.format == "JPEG":
                    image.draft(None, (int(min_side), int(min_side)))
                array = images.to_array(image)
    except (images.ImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        if skipped is not None:
            skipped.add(path, str(e))
        return None
    return _to_channels(array, channels)


def _check_split(data, split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; received {split!r}")
    if split == "train":
        return data.train_files, data.y_train
    return data.test_files, data.y_test


def folder_dataset(data, split="train", *, batch_size, image_size, channels=None, resize=None,
                   shuffle=None, seed=0, augment=None, cache_bytes=CACHE_BYTES,
                   drop_remainder=False):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` streamed from ``data``'s files.

    Args:
        data: a :class:`kcnn.data.folder.FolderData`.
        split: ``"train"`` or ``"test"``.
        batch_size: examples per batch.
        image_size: an int or ``(height, width)``: the model's input size.
        channels: 1 or 3 (default: ``data.channels``).
        resize: ``"stretch"``, ``"crop"`` or ``"pad"`` (default ``data.default_resize``:
            crop; see :mod:`kcnn.data.resize`).
        shuffle: reshuffle every epoch from ``seed`` (default: True for ``"train"``).
        seed: shuffle and augmentation seed.
        augment: an augmentation preset (:mod:`kcnn.data.augment`); training split only.
        cache_bytes: keep the resized images in memory after the first epoch when they take at
            most this many bytes (0: never).
        drop_remainder: drop the last, smaller batch.

    Images come out float32 in [0, 1], ``(batch, height, width, channels)``; labels int64.
    """
    import tensorflow as tf

    from kcnn.data.pipeline import _check_image_size
    from kcnn.export.checks import check_positive

    files, labels = _check_split(data, split)
    batch_size = check_positive("batch_size", batch_size, integer=True)
    size = _check_image_size(image_size)
    if size is None:
        raise ValueError("image_size must be given for folder data (the images differ in size); "
                         "received None")
    channels = data.channels if channels is None else channels
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be None, 1 or 3; received {channels!r}")
    resize = check_resize(data.default_resize if resize is None else resize)
    augment = check_augment(augment)
    if augment != "none" and split != "train":
        raise ValueError(f"augment applies to the training split only; received augment="
                         f"{augment!r} with split={split!r}")
    shuffle = split == "train" if shuffle is None else bool(shuffle)
    n = len(files)
    skipped, min_side = data.skipped, max(size)

    def decode(path):
        array = decode_file(path.decode(), channels, min_side=min_side, skipped=skipped)
        if array is None:
            return np.zeros((1, 1, channels), np.uint8), False
        return array, True

    def load(path, label):
        image, ok = tf.numpy_function(decode, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((None, None, channels))
        image = resize_images(tf.cast(image, tf.float32) / 255.0, size, resize, antialias=True)
        return tf.clip_by_value(image, 0.0, 1.0), label, ok

    def readable(image, label, ok):
        return ok

    def pair(image, label, ok):
        return image, label

    cached = 0 < n * size[0] * size[1] * channels * 4 <= cache_bytes
    ds = tf.data.Dataset.from_tensor_slices((list(files), np.asarray(labels, np.int64)))
    if shuffle and not cached:  # shuffle the names (cheap), not decoded images
        ds = ds.shuffle(n, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(readable).map(pair)
    if cached:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(n, seed=int(seed), reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return augment_batches(ds, augment, seed).prefetch(tf.data.AUTOTUNE)
