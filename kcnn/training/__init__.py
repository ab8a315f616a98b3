"""Training with ``model.fit``: recipes, callbacks, ``fit``, run folders, devices, distribution.

``fit(model, data, recipe)`` is the library entry point (``kcnn-train`` is its command line, through
``runs.execute``). Modules: ``recipes`` (d2l and modern hyper-parameters), ``callbacks`` (timing,
NaN guard, history, progress bar), ``watch`` (curves after every epoch, live notebook curves),
``html_report`` (``report.html``), ``trainer`` (datasets, compile, ``model.fit``), ``runs`` (a run
folder: train, export, plots, report), ``devices`` (device report), ``precision`` (the
mixed-precision policy), ``distribution`` and ``multiworker`` (several devices or machines).

The names below load on first use, so ``import kcnn.training.runs`` or ``.distribution`` does not
import Keras: distribution set-up must run before the backend starts.
"""
import importlib

_EXPORTS = {
    "AUTO_STEPS_PER_EXECUTION": "trainer", "FitResult": "trainer", "compile_model": "trainer",
    "JIT_AUTO": "trainer", "JitChoice": "trainer",
    "confusion_matrix": "trainer", "fit": "trainer", "make_datasets": "trainer",
    "resolve_jit_compile": "trainer", "resolve_steps_per_execution": "trainer",
    "HistoryWriter": "callbacks", "ProgressBar": "callbacks", "StopOnNaN": "callbacks",
    "Throughput": "callbacks", "TrainingDiverged": "callbacks",
    "CurvesWriter": "watch", "LiveCurves": "watch", "in_notebook": "watch",
    "write_html_report": "html_report",
    "device_report": "devices",
    "PRECISIONS": "precision", "float32_output": "precision", "resolve_policy": "precision",
    "set_precision": "precision",
    "DISTRIBUTIONS": "distribution", "Distribution": "distribution",
    "DistributionError": "distribution", "make_distribution": "distribution",
    "prepare_distribution": "distribution",
    "Recipe": "recipes",
}
__all__ = sorted([*_EXPORTS, "get_recipe", "recipes"])


def __getattr__(name):
    if name == "get_recipe":
        return importlib.import_module("kcnn.training.recipes").get
    if name == "recipes":
        return importlib.import_module("kcnn.training.recipes")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kcnn.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"kcnn.training.{_EXPORTS[name]}"), name)


def __dir__():
    return __all__
