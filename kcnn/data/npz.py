"""``npz:PATH``: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` [, ``class_names``].

Read with ``allow_pickle=False``: object arrays are refused, never unpickled.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from kcnn.data.arrays import DataError
from kcnn.data.image_data import from_files

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SPEC = "npz:PATH"


def read_npz(path: str) -> dict:
    """Read an ``.npz`` data set without unpickling.

    Returns a dict with ``x_train``, ``y_train``, ``x_test``, ``y_test`` as
    stored, plus ``class_names`` (a tuple of str) when the file has that array.
    """
    if not os.path.isfile(path):
        raise DataError(f"npz file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an npz file (an .npz is a zip archive of .npy arrays, as "
                        "numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            missing = [k for k in NPZ_KEYS if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; an npz data set "
                    f"needs {', '.join(NPZ_KEYS)} (and optionally class_names); "
                    f"found {', '.join(sorted(keys)) or 'no arrays'}"
                )
            out = {k: f[k] for k in NPZ_KEYS}
            if "class_names" in keys:
                names = f["class_names"]
                if names.ndim != 1 or names.dtype.kind not in "US":
                    raise DataError(
                        f"{path}: class_names must be a 1-D array of strings; "
                        f"received shape {names.shape}, dtype {names.dtype}"
                    )
                out["class_names"] = tuple(
                    n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()
                )
    except DataError:
        raise
    except ValueError as e:  # object arrays refused by allow_pickle=False, bad headers
        if "pickle" in str(e):
            raise DataError(f"{path}: holds object (pickled) arrays, which kcnn never loads; save "
                            "the images and labels as numeric arrays") from None
        raise DataError(f"{path}: not a readable npz file: {e}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable npz file: {e}") from e
    return out


# --------------------------------------------------------------------------- IDX
def load(path, *, seed=0, test_fraction=0.2):
    """The data set in the ``.npz`` file at ``path``."""
    return from_files(f"npz:{path}", read_npz(path), where=path)
