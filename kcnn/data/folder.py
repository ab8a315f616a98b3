"""``folder:DIR``: one sub-folder of images per class, read with ``keras.utils.image_dataset_from_directory``."""
from __future__ import annotations

import os

import numpy as np

from kcnn.data.arrays import DataError
from kcnn.data.image_data import from_arrays

SPEC = "folder:DIR"

_IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras's loader reads


# File formats TensorFlow's image decoder (behind image_dataset_from_directory) reads, by PIL name.
_DECODABLE = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp"}


def _check_image(path):
    """(size, mode) of the image at ``path``; DataError when TensorFlow could not decode it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            size, mode, fmt = im.size, im.mode, im.format
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image: {e}") from e
    if fmt not in _DECODABLE:
        raise DataError(f"{path}: a {fmt} image under an image extension; folder:DIR reads "
                        f"{', '.join(_DECODABLE)} files only (convert it first)")
    return size, mode


def _scan_class_folders(directory):
    """Check a class-per-sub-folder tree; return (class names, (H, W), color_mode, count)."""
    if not os.path.isdir(directory):
        raise DataError(f"image folder not found: {directory}")
    classes = sorted(
        d for d in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")  # as Keras
    )
    if not classes:
        raise DataError(
            f"{directory}: empty folder: no class sub-folders (folder:DIR needs one "
            f"sub-folder of images per class)"
        )
    first, grayscale, count = None, True, 0
    for c in classes:
        in_class = 0
        for root, _, files in os.walk(os.path.join(directory, c)):
            for f in sorted(files):
                if not f.lower().endswith(_IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(root, f)
                size, mode = _check_image(path)
                if first is None:
                    first = (path, size)
                elif size != first[1]:
                    raise DataError(
                        f"{path}: images of inconsistent shape: {size[0]}x{size[1]} "
                        f"(width x height) but {first[0]} is {first[1][0]}x{first[1][1]}"
                    )
                grayscale &= mode in ("1", "L", "I", "I;16", "F")
                in_class += 1
        if in_class == 0:  # Keras would make it a class that no example has
            raise DataError(
                f"{os.path.join(directory, c)}: class folder {c!r} holds no image files "
                f"({', '.join(_IMAGE_EXTENSIONS)}); remove it or add its images"
            )
        count += in_class
    width, height = first[1]
    return tuple(classes), (height, width), "grayscale" if grayscale else "rgb", count


def _to_numpy(ds):
    """Concatenate a batched (images, labels) tf.data.Dataset into uint8/int64 arrays."""
    xs, ys = [], []
    for xb, yb in ds.as_numpy_iterator():
        xs.append(np.clip(np.round(xb), 0, 255).astype(np.uint8))
        ys.append(yb.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load(directory, *, seed=0, test_fraction=0.2):
    """One sub-folder of images per class; ``DIR/train`` + ``DIR/test`` if present, else a seeded split."""
    import keras

    train_dir, test_dir = os.path.join(directory, "train"), os.path.join(directory, "test")
    has_split = os.path.isdir(train_dir) and os.path.isdir(test_dir)
    common = dict(labels="inferred", label_mode="int", batch_size=256, verbose=False)
    if has_split:
        classes, size, mode, _ = _scan_class_folders(train_dir)
        test_classes, test_size, test_mode, _ = _scan_class_folders(test_dir)
        if test_classes != classes:
            raise DataError(
                f"{directory}: train/ and test/ have different class sub-folders: "
                f"{', '.join(classes)} vs {', '.join(test_classes)}"
            )
        if test_size != size:
            raise DataError(
                f"{test_dir}: images of inconsistent shape: {test_size} (H, W) but "
                f"the images in {train_dir} are {size}"
            )
        mode = "grayscale" if mode == test_mode == "grayscale" else "rgb"
        kw = dict(common, class_names=list(classes), image_size=size, color_mode=mode, shuffle=False)
        train = keras.utils.image_dataset_from_directory(train_dir, **kw)
        test = keras.utils.image_dataset_from_directory(test_dir, **kw)
    else:
        classes, size, mode, count = _scan_class_folders(directory)
        n_test = int(count * test_fraction)
        if n_test < 1 or n_test >= count:
            raise DataError(
                f"{directory}: {count} image(s) are too few to hold out test_fraction="
                f"{test_fraction} for testing (add images or DIR/train and DIR/test sub-folders)"
            )
        # Keras shuffles the file list with `seed` before taking the validation subset.
        train, test = keras.utils.image_dataset_from_directory(
            directory, **common, class_names=list(classes), image_size=size,
            color_mode=mode, shuffle=True, seed=seed,
            validation_split=test_fraction, subset="both",
        )
    xtr, ytr = _to_numpy(train)
    xte, yte = _to_numpy(test)
    return from_arrays(f"folder:{directory}", xtr, ytr, xte, yte, classes, where=directory)
