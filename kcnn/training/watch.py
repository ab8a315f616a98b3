"""Training you can watch: ``curves.png`` after every epoch, and d2l-style live curves in Jupyter.

:class:`CurvesWriter` redraws ``curves.png`` from the history rows at the end of every epoch (so a
user can open the file while a run goes on). :class:`LiveCurves` draws the same curves — train
loss, train accuracy, test accuracy against the epoch, like d2l's ``Animator`` — inside a Jupyter
notebook, replacing the figure in place each epoch; outside a notebook kernel it does nothing.
"""
from __future__ import annotations

import os
import sys

import keras

from kcnn import plots


class CurvesWriter(keras.callbacks.Callback):
    """Rewrites ``path`` (a PNG) from ``history.rows`` at the end of every epoch.

    Args:
        path: the PNG to (re)write atomically.
        history: the :class:`kcnn.training.HistoryWriter` of the same fit, which holds the rows
            of every epoch so far (a resumed run's earlier epochs included).
        title: the figure's title.
    """

    def __init__(self, path, history, *, title=None):
        super().__init__()
        self.path, self.history, self.title = os.fspath(path), history, title

    def on_epoch_end(self, epoch, logs=None):
        if self.history.rows:
            plots.plot_curves(self.history.rows, self.path, title=self.title)


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session, where figures can be displayed inline."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class LiveCurves(keras.callbacks.Callback):
    """d2l-style live training curves in a Jupyter notebook; a no-op anywhere else.

    Pass it to ``model.fit(..., callbacks=[LiveCurves()])`` or ``kcnn.training.fit``. After every
    epoch it redraws train loss, train accuracy and test (validation) accuracy against the epoch
    and replaces the previous figure in the cell output.

    Args:
        title: the figure's title.
        enabled: ``None`` (default) draws only inside a notebook kernel; True/False force it.
    """

    def __init__(self, *, title=None, enabled=None):
        super().__init__()
        self.title = title
        self.enabled = in_notebook() if enabled is None else bool(enabled)
        self.rows = []
        self._handle = None

    def on_train_begin(self, logs=None):
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            row["test_" + key[4:] if key.startswith("val_") else key] = float(value)
        self.rows.append(row)
        if self.enabled:
            self._draw()

    def figure(self):
        """The current curves as a matplotlib ``Figure`` (None before the first epoch)."""
        return plots.curves_figure(self.rows, title=self.title) if self.rows else None

    def _draw(self):
        import io

        from IPython import display

        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        # A PNG, not the Figure: a Figure displays as an image only under %matplotlib inline.
        image = display.Image(data=buffer.getvalue(), format="png")
        if self._handle is None:
            self._handle = display.display(image, display_id=True)
        else:
            self._handle.update(image)
