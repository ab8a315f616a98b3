"""Data augmentation with Keras's own preprocessing layers, by named preset.

A preset is a list of ``keras.layers`` random preprocessing layers run on the training batches
only, inside the ``tf.data`` pipeline (``keras.layers.Pipeline`` is made for that: it runs
there under every Keras backend). Images are float32 in [0, 1] at the model's input size::

    none             no augmentation (LeNet on digits: a flipped 2 is not a 2)
    flip             RandomFlip("horizontal")
    flip-crop        RandomFlip("horizontal"), then a random crop of 80-100 % of each side
                     resized back (RandomZoom in, RandomTranslation to move the crop): the
                     AlexNet paper's and d2l's flip-and-crop for photos
    flip-crop-color  flip-crop, then RandomBrightness and RandomContrast (d2l's colour jitter)
    shift            RandomTranslation of up to 10 % and RandomRotation of up to 10 degrees,
                     zero fill, no flip (digits and other non-mirror-symmetric images)

The layers are seeded from the run's seed, so the same seed gives the same augmented batches
on CPU.
"""
from __future__ import annotations

AUGMENT_PRESETS = ("none", "flip", "flip-crop", "flip-crop-color", "shift")


def check_augment(augment, name="augment"):
    """``augment`` if it is a preset name (or None, meaning ``"none"``), else ValueError."""
    if augment is None:
        return "none"
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"{name} must be one of {', '.join(AUGMENT_PRESETS)}; "
                         f"received {augment!r}")
    return augment


def augmentation_layers(augment, seed=0) -> list:
    """The Keras preprocessing layers of preset ``augment``, seeded from ``seed`` (a list,
    empty for ``"none"``)."""
    import keras

    augment = check_augment(augment)
    seeds = iter(range(int(seed) * 16 + 1, int(seed) * 16 + 16))
    L = keras.layers
    flip = [L.RandomFlip("horizontal", seed=next(seeds))]
    crop = [L.RandomZoom(height_factor=(-0.2, 0.0), fill_mode="reflect", seed=next(seeds)),
            L.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=next(seeds))]
    color = [L.RandomBrightness(0.2, value_range=(0.0, 1.0), seed=next(seeds)),
             L.RandomContrast(0.2, value_range=(0.0, 1.0), seed=next(seeds))]
    shift = [L.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=next(seeds)),
             L.RandomRotation(10 / 360, fill_mode="constant", seed=next(seeds))]
    return {"none": [], "flip": flip, "flip-crop": flip + crop,
            "flip-crop-color": flip + crop + color, "shift": shift}[augment]


def augmentation(augment, seed=0):
    """A ``keras.layers.Pipeline`` applying preset ``augment`` to a batch of images, or None for
    ``"none"``. Usable in ``tf.data.Dataset.map`` under every backend, and in a model."""
    import keras

    layers = augmentation_layers(augment, seed)
    return keras.layers.Pipeline(layers, name=f"augment_{augment.replace('-', '_')}") \
        if layers else None


def augment_batches(ds, augment, seed):
    """``ds`` (a batched ``tf.data.Dataset`` of ``(images, labels)``) with :func:`augmentation`
    applied to every batch of images; ``ds`` itself for ``"none"``.

    One call per batch, in order, so the augmentation is reproducible from ``seed``.
    """
    pipeline = augmentation(augment, seed)
    if pipeline is None:
        return ds

    def augmented(images, labels):
        return pipeline(images, training=True), labels

    return ds.map(augmented)
