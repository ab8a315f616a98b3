"""Keras callbacks of kcnn's training loop: timing, NaN guard, per-epoch history, progress bar."""
from __future__ import annotations

import math
import os
import time

import keras

from kcnn.files import read_history, write_history


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training was stopped."""


class Throughput(keras.callbacks.Callback):
    """Times the training part of every epoch (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.train_seconds = {}
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch

    def on_test_begin(self, logs=None):
        # Validation inside fit starts here; evaluate() outside fit has no epoch running.
        if self._start is not None and self._epoch not in self.train_seconds:
            self.train_seconds[self._epoch] = time.perf_counter() - self._start

    def on_epoch_end(self, epoch, logs=None):
        if epoch not in self.train_seconds:
            self.train_seconds[epoch] = time.perf_counter() - self._start
        self._start = None


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN`` that remembers where the loss went bad (for a clear error)."""

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.where is None:
            self.where = (self._epoch + 1, batch + 1, float(loss))
            self.model.stop_training = True


class HistoryWriter(keras.callbacks.Callback):
    """Rewrites ``history.csv`` (atomically) at the end of every epoch.

    Rows already in the file from a resumed run are kept up to the epoch training restarts at,
    so after a kill and ``--resume`` every epoch appears exactly once. Columns: ``epoch``,
    ``loss``, ``accuracy``, ``test_loss``, ``test_accuracy``, ``lr``, ``seconds``; with
    ``evaluated="val"`` (a validation split is evaluated after each epoch) Keras's
    ``val_loss``, ``val_accuracy`` instead of the ``test_`` columns.
    """

    def __init__(self, path, throughput: Throughput, *, evaluated="test"):
        super().__init__()
        if evaluated not in ("test", "val"):
            raise ValueError(f"evaluated must be 'test' or 'val'; received {evaluated!r}")
        self.path, self.throughput, self.prefix = path, throughput, evaluated + "_"
        self.rows = read_history(path) if path and os.path.exists(path) else []

    def on_epoch_begin(self, epoch, logs=None):
        # `epoch` is where fit (re)starts; BackupAndRestore has already moved it on resume.
        self.rows = [r for r in self.rows if r["epoch"] <= epoch]

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        for key, value in (logs or {}).items():
            key = self.prefix + key[4:] if key.startswith("val_") else key
            row[key] = float(value)
        row.pop("learning_rate", None)
        row["lr"] = _current_lr(self.model.optimizer)
        row["seconds"] = self.throughput.train_seconds.get(epoch, math.nan)
        self.rows = [r for r in self.rows if r["epoch"] != epoch + 1] + [row]
        if self.path:
            write_history(self.path, self.rows)


def _current_lr(optimizer):
    """The learning rate the optimizer is at now (schedules evaluated at its iteration)."""
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return math.nan


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar that never counts past the epoch's steps.

    With ``steps_per_execution > 1`` Keras reports the last batch of a compiled call even when the
    epoch ends inside that call, so its bar shows e.g. ``24/23`` (keras-team/keras#20861); this
    bar clamps the count to the epoch's step total.
    """

    def _update_progbar(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super()._update_progbar(batch, logs)
