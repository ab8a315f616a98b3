"""Training with ``model.fit``: recipes, callbacks, ``fit``, run folders, devices, distribution.

``fit(model, data, recipe)`` is the library entry point (``kcnn-train`` is its command line, through
``runs.execute``). Modules: ``recipes`` (d2l and modern hyper-parameters), ``callbacks`` (timing,
NaN guard, history, progress bar), ``watch`` (curves after every epoch, live notebook
curves), ``html_report`` (``report.html``), ``fit`` (datasets, compile, ``model.fit``), ``runs`` (a run
folder: train, export, plots, report), ``devices`` (device report), ``precision`` (the mixed-precision policy),
``distribution`` and ``multiworker`` (several devices or machines).
"""
from kcnn.training import recipes
from kcnn.training.callbacks import HistoryWriter, ProgressBar, StopOnNaN, Throughput, TrainingDiverged
from kcnn.training.devices import device_report
from kcnn.training.distribution import (DISTRIBUTIONS, Distribution, DistributionError,
                                        make_distribution, prepare_distribution)
from kcnn.training.fit import (AUTO_STEPS_PER_EXECUTION, FitResult, compile_model, confusion_matrix,
                               fit, make_datasets, resolve_jit_compile, resolve_steps_per_execution)
from kcnn.training.html_report import write_html_report
from kcnn.training.precision import PRECISIONS, float32_output, resolve_policy, set_precision
from kcnn.training.recipes import Recipe
from kcnn.training.watch import CurvesWriter, LiveCurves, in_notebook

get_recipe = recipes.get

__all__ = [
    "AUTO_STEPS_PER_EXECUTION", "CurvesWriter", "DISTRIBUTIONS", "LiveCurves", "Distribution", "DistributionError", "FitResult",
    "HistoryWriter", "ProgressBar", "Recipe", "StopOnNaN", "Throughput", "TrainingDiverged",
    "compile_model", "confusion_matrix", "device_report", "fit", "float32_output", "get_recipe",
    "make_datasets", "make_distribution", "prepare_distribution", "recipes",
    "resolve_jit_compile", "resolve_steps_per_execution", "set_precision", "resolve_policy", "PRECISIONS", "in_notebook", "write_html_report",
]
