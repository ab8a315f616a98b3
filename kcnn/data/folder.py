"""``folder:DIR``: one sub-folder of images per class, of any size and kind, streamed from disk.

``load`` only *lists* the files (and reads each header): nothing is decoded until a
:class:`FolderData` pipeline runs (:mod:`kcnn.data.stream`), so memory does not grow with the
number of images. Layouts::

    DIR/cat/*.jpg, DIR/dog/*.png ...              a seeded train/test split of the files
    DIR/train/cat/..., DIR/test/cat/...           the split as given

Every format Pillow reads counts as an image (``.jpg .jpeg .png .gif .bmp .tif .tiff .webp``);
hidden folders (``.ipynb_checkpoints``) are not classes. A file whose header Pillow cannot read
is skipped with a one-line warning on stderr and listed in :attr:`FolderData.skipped_files`
(``kcnn-train`` reports them as ``data.skipped_files`` in ``report.json``); so is a file that
fails later, while it is decoded. A class folder with no readable image, or a tree without
class folders, is a :class:`DataError`.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field, replace

import numpy as np

from kcnn.data.arrays import DataError, check_class_names, validation_indices

SPEC = "folder:DIR"

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class SkippedFiles:
    """The files a folder data set skipped: warned about once each, on stderr, and counted.

    Thread-safe: the ``tf.data`` decoders report from several threads.
    """

    def __init__(self, stream=None):
        self._reasons, self._lock, self._stream = {}, threading.Lock(), stream

    def add(self, path: str, reason: str) -> None:
        """Record ``path`` (warning once, one line, naming the file and the reason)."""
        reason = " ".join(str(reason).split())  # one line
        with self._lock:
            if path in self._reasons:
                return
            self._reasons[path] = reason
        print(f"warning: skipped {path}: {reason}", file=self._stream or sys.stderr, flush=True)

    @property
    def paths(self) -> list:
        """The skipped files, sorted."""
        with self._lock:
            return sorted(self._reasons)

    def __len__(self):
        with self._lock:
            return len(self._reasons)


@dataclass(frozen=True, eq=False)
class FolderData:
    """A train/test image-classification data set of image files, decoded as it streams.

    Attributes:
        name: the spec (``folder:DIR``).
        class_names: one name per class (sorted sub-folder names).
        train_files, test_files: image paths; ``y_train``, ``y_test``: their int64 labels.
        channels: 1 when every image is gray, else 3.
        skipped: the :class:`SkippedFiles` record shared by every split of this folder.
    """

    name: str
    class_names: tuple
    train_files: tuple
    y_train: np.ndarray
    test_files: tuple
    y_test: np.ndarray
    channels: int
    skipped: SkippedFiles = field(default_factory=SkippedFiles)

    #: How images are resized by default: keep the aspect ratio (photos).
    default_resize = "crop"

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        """Number of training files (before any is found broken while decoding)."""
        return len(self.train_files)

    @property
    def num_test(self) -> int:
        """Number of test files."""
        return len(self.test_files)

    @property
    def image_shape(self) -> tuple:
        """``(None, None, channels)``: the images have any size until resized."""
        return (None, None, self.channels)

    @property
    def skipped_files(self) -> list:
        """Files skipped so far (unreadable header, or failed to decode), sorted."""
        return self.skipped.paths

    def dataset(self, split="train", **kwargs):
        """A batched ``tf.data`` pipeline of one split; see :func:`kcnn.data.stream.folder_dataset`."""
        from kcnn.data.stream import folder_dataset

        return folder_dataset(self, split, **kwargs)

    def __repr__(self):
        return (f"FolderData(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
                f"channels={self.channels}, num_classes={self.num_classes}, "
                f"skipped={len(self.skipped)})")


def _header(path):
    """``(gray, None)`` from the image's header, or ``(None, reason)`` if Pillow cannot read it."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                mode = image.mode
                if mode in ("P", "PA"):
                    colours = np.asarray(image.getpalette("RGB") or [0, 0, 1]).reshape(-1, 3)
                    return bool((colours == colours[:, :1]).all()), None
                return mode in _GRAY_MODES, None
    except Image.DecompressionBombError as e:
        return None, f"too large to decode ({e})"
    except (OSError, ValueError, SyntaxError) as e:
        return None, f"not a readable image ({type(e).__name__}: {e})"


def _scan(directory, skipped):
    """``(classes, files, labels, all_gray)`` of a class-per-sub-folder tree."""
    if not os.path.isdir(directory):
        raise DataError(f"image folder not found: {directory}")
    classes = sorted(d for d in os.listdir(directory)
                     if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
    if not classes:
        raise DataError(f"{directory}: empty folder: no class sub-folders (folder:DIR needs one "
                        f"sub-folder of images per class)")
    files, labels, all_gray = [], [], True
    for label, c in enumerate(classes):
        found = readable = 0
        for root, dirs, names in os.walk(os.path.join(directory, c)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(names):
                if not f.lower().endswith(IMAGE_EXTENSIONS) or f.startswith("."):
                    continue
                found += 1
                path = os.path.join(root, f)
                gray, problem = _header(path)
                if problem:
                    skipped.add(path, problem)
                    continue
                readable += 1
                all_gray &= gray
                files.append(path)
                labels.append(label)
        if not readable:
            what = "no readable image" if found else (
                f"no image files ({', '.join(IMAGE_EXTENSIONS)})")
            raise DataError(f"{os.path.join(directory, c)}: class folder {c!r} holds {what}; "
                            f"remove it or add its images")
    return tuple(classes), files, np.asarray(labels, np.int64), all_gray


def load(directory, *, seed=0, test_fraction=0.2) -> FolderData:
    """List ``directory`` (see the module docstring) into a :class:`FolderData`.

    Without ``train``/``test`` sub-folders, a seeded random ``test_fraction`` of the files is
    held out for testing (same seed, same split).
    """
    skipped = SkippedFiles()
    train_dir, test_dir = os.path.join(directory, "train"), os.path.join(directory, "test")
    name = f"folder:{directory}"
    if os.path.isdir(train_dir) and os.path.isdir(test_dir):
        classes, train, y_train, gray = _scan(train_dir, skipped)
        test_classes, test, y_test, test_gray = _scan(test_dir, skipped)
        if test_classes != classes:
            raise DataError(f"{directory}: train/ and test/ have different class sub-folders: "
                            f"{', '.join(classes)} vs {', '.join(test_classes)}")
        gray &= test_gray
    else:
        classes, files, labels, gray = _scan(directory, skipped)
        count = len(files)
        n_test = int(count * test_fraction)
        if n_test < 1 or n_test >= count:
            raise DataError(
                f"{directory}: {count} readable image(s) are too few to hold out test_fraction="
                f"{test_fraction} for testing (add images or DIR/train and DIR/test sub-folders)")
        order = np.random.default_rng(seed).permutation(count)
        test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
        train, y_train = [files[i] for i in train_idx], labels[train_idx]
        test, y_test = [files[i] for i in test_idx], labels[test_idx]
    check_class_names(classes, directory)
    return FolderData(name, classes, tuple(train), y_train, tuple(test), y_test,
                      1 if gray else 3, skipped)


def split_folder_validation(data: FolderData, fraction: float, seed: int):
    """``(train, val)`` of a :class:`FolderData`: ``fraction`` of its training files held out,
    stratified by class where every class can spare one (``val``'s test split is the held-out
    files, as :func:`kcnn.data.split_validation` does for arrays)."""
    tr, va = validation_indices(data.y_train, fraction, seed)
    files = data.train_files
    train = replace(data, train_files=tuple(files[i] for i in tr), y_train=data.y_train[tr])
    val_files = tuple(files[i] for i in va)
    val = replace(data, name=f"{data.name} (validation)", train_files=val_files,
                  y_train=data.y_train[va], test_files=val_files, y_test=data.y_train[va])
    return train, val
