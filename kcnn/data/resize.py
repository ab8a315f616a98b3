"""Resizing images to a model's input: ``stretch``, ``crop`` or ``pad`` (Keras's three ways).

``keras.utils.image_dataset_from_directory`` stretches by default and offers
``crop_to_aspect_ratio`` / ``pad_to_aspect_ratio``; kcnn names the same three modes:

``stretch``  resize to the target, aspect ratio ignored (digits, already-square data).
``crop``     cut the largest centred box of the target's aspect ratio, then resize: nothing is
             distorted, the edges of the long side are lost (photos; the ``folder:DIR`` default).
``pad``      resize to fit inside the target keeping the aspect ratio and pad with zeros
             (black bars) to the target: nothing is lost or distorted.

:func:`resize_images` is the one implementation, TensorFlow ops that run inside ``tf.data``
on every Keras backend, for one image ``(H, W, C)`` or a batch ``(n, H, W, C)``.
"""
from __future__ import annotations

RESIZE_MODES = ("stretch", "crop", "pad")


def check_resize(resize, name="resize"):
    """``resize`` if it is one of :data:`RESIZE_MODES`, else ValueError naming it."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"{name} must be one of {', '.join(RESIZE_MODES)}; received {resize!r}")
    return resize


def _crop_to_aspect(images, target_height, target_width):
    """The largest centred box of ``images`` with the target's aspect ratio (as Keras's
    ``crop_to_aspect_ratio``)."""
    import tensorflow as tf

    shape = tf.shape(images)
    height, width = tf.cast(shape[-3], tf.float64), tf.cast(shape[-2], tf.float64)
    one = tf.constant(1.0, tf.float64)
    crop_height = tf.minimum(height, tf.maximum(one, tf.round(width * target_height / target_width)))
    crop_width = tf.minimum(width, tf.maximum(one, tf.round(height * target_width / target_height)))
    top = tf.cast((height - crop_height) // 2, tf.int32)
    left = tf.cast((width - crop_width) // 2, tf.int32)
    return tf.image.crop_to_bounding_box(images, top, left, tf.cast(crop_height, tf.int32),
                                         tf.cast(crop_width, tf.int32))


def resize_images(images, size, mode="stretch", *, antialias=False):
    """``images`` (float, ``(H, W, C)`` or ``(n, H, W, C)``) resized to ``size`` = (h, w) by ``mode``.

    Bilinear interpolation; ``antialias`` low-pass filters when shrinking (photos shrunk several
    times over alias without it). ``pad`` fills with zeros.
    """
    import tensorflow as tf

    check_resize(mode)
    target_height, target_width = (int(v) for v in size)
    if mode == "pad":
        return tf.image.resize_with_pad(images, target_height, target_width, antialias=antialias)
    if mode == "crop":
        images = _crop_to_aspect(images, target_height, target_width)
    return tf.image.resize(images, (target_height, target_width), method="bilinear",
                           antialias=antialias)
