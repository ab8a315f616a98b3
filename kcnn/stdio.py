"""Console helpers shared by the command-line tools."""

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what native libraries print straight to file descriptor 2.

    TensorFlow's oneDNN/CUDA start-up banners ignore ``TF_CPP_MIN_LOG_LEVEL``; silencing them
    while the backend loads keeps a command's error message to one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
