"""One complete training run in a run folder — what ``kcnn-train`` does, callable from Python.

:func:`execute` takes a :class:`RunConfig`, trains with :func:`kcnn.training.fit` and leaves in
``config.out``::

    config.json    the run's configuration (``--resume`` reads it back)
    history.csv    one row per epoch (train loss/acc, test loss/acc, lr, seconds)
    backup/        BackupAndRestore checkpoint while the run is unfinished
    model.keras    the trained model
    model.onnx     the ONNX export, verified against Keras in onnxruntime
    model.explain.onnx  the same network with its conv/pool activations (kcnn-serve's page)
    report.json    final figures (accuracy, loss, examples/sec, device, ONNX check, ...)
    report.html    one self-contained page: the figures, curves, confusion matrix, kernels, layers
    curves.png     rewritten after every epoch; confusion.png, kernels.png at the end
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

__all__ = ["RunConfig", "RunError", "execute", "load_config", "CONFIG_FILE"]

CONFIG_FILE = "config.json"


class RunError(ValueError):
    """A run cannot start: bad configuration, data or output folder (the message says why)."""


@dataclass
class RunConfig:
    """Everything that defines a run; ``None`` means "the recipe's value"."""

    out: str
    model: str = "lenet"
    conv: str = "builtin"
    dataset: str = "digits"
    recipe: str = "modern"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    image_size: int | None = None
    seed: int = 0
    export: bool = True
    mixed_precision: str = "none"  # none | fp16 | bf16 | auto (True/False: fp16/none)
    jit_compile: str = "auto"
    steps_per_execution: int | str = "auto"
    distribute: str = "none"
    early_stopping: int | None = None
    validation: float | None = None  # fraction of the training split evaluated after each epoch
    resize: str | None = None  # stretch | crop | pad; None: crop for folder:DIR, else stretch
    augment: str | None = None  # an augmentation preset; None: the recipe's
    verbose: str | int = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(out: str) -> RunConfig:
    """The :class:`RunConfig` saved in run folder ``out`` (for resuming).

    The run writes into ``out`` whatever folder the saved config names: a copied run folder must
    never write into the original. A ``config.json`` that kcnn-train did not write is a RunError.
    """
    from kcnn.files import read_json

    path = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"no run to resume in {out!r}: {CONFIG_FILE} not found")
    try:
        values = read_json(path)
    except (OSError, ValueError) as e:
        raise RunError(f"cannot resume from {path}: not a readable JSON file ({e})") from None
    expected = {f.name: f for f in dataclasses.fields(RunConfig)}
    if not isinstance(values, dict) or not {"model", "dataset", "conv"} <= set(values):
        raise RunError(f"cannot resume from {path}: not a kcnn-train run configuration "
                       "(it needs model, dataset, conv, ...); start a new run with --out")
    for key in ("model", "dataset", "conv", "recipe"):
        if key in values and not isinstance(values[key], str):
            raise RunError(f"cannot resume from {path}: {key} must be a string; "
                           f"found {values[key]!r}")
    values = {k: v for k, v in values.items() if k in expected}
    values["out"] = out
    return RunConfig(**values)


def _jit(value):
    return {"auto": "auto", "on": True, "off": False}[value]


def _twin(model, build, *, policy=None):
    """A copy of ``model`` with its trained weights, built by ``build`` outside any distribution
    strategy and, if given, under dtype ``policy`` (``"float32"``: ONNX export wants float32)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy or previous)
    try:
        twin = build()
    finally:
        keras.config.set_dtype_policy(previous)
    twin.set_weights(model.get_weights())
    return twin


def _first_conv_kernel(model):
    from kcnn.export.introspection import is_convolution, iter_layers

    return next((layer for layer in iter_layers(model) if is_convolution(layer) and layer.built), None)


def _export(model, config, data, out, recipe):
    """Export ``model.onnx`` and verify it against Keras on up to 256 test images."""
    import numpy as np

    from kcnn import export as kexport
    from kcnn.training.trainer import default_resize, test_dataset

    path = os.path.join(out, "model.onnx")
    # The explain file beside it feeds kcnn-serve's see-inside page (feature maps, kernels); the
    # served model fits other-sized images the way it was trained (crop, pad or stretch).
    kexport.export_onnx(model, path, labels=list(data.class_names), model_name=recipe.model,
                        conv=config.conv, explain=True,
                        preprocessing={"fit": config.resize or default_resize(data)})
    n = min(256, data.num_test)
    batch = next(iter(test_dataset(model, data, batch_size=n, resize=config.resize, limit=n)))
    samples = np.asarray(batch[0], dtype=np.float32)
    figures = kexport.verify(model, path, samples, atol=1e-3)
    return {k: (float(v) if k != "n" else int(v)) for k, v in figures.items()}


def _recipe_and_data(config):
    """The recipe and the data set of ``config``; RunError for anything the user got wrong."""
    from kcnn import data as kdata
    from kcnn import models
    from kcnn.training import recipes
    from kcnn.training.trainer import resolve_steps_per_execution
    from kcnn.training.precision import check_precision
    from kcnn.data.resize import check_resize

    if config.model not in models.available():
        raise RunError(f"unknown model {config.model!r}; available: {', '.join(models.available())}")
    try:
        recipe = recipes.get(config.recipe, config.model, epochs=config.epochs,
                             batch_size=config.batch_size, lr=config.lr,
                             optimizer=config.optimizer, image_size=config.image_size,
                             augment=config.augment)
        if config.resize is not None:
            check_resize(config.resize)
        resolve_steps_per_execution(config.steps_per_execution,
                                    distributed=config.distribute != "none")
        check_precision(config.mixed_precision)
        data = kdata.load(config.dataset, seed=config.seed)
    except (ValueError, TypeError) as e:  # DataError is a ValueError
        raise RunError(str(e)) from None
    return recipe, data


def _model_builder(config, recipe, data):
    from kcnn import models

    input_shape = (recipe.image_size, recipe.image_size, data.image_shape[-1])

    def build():
        return models.build(recipe.model, conv=config.conv, input_shape=input_shape,
                            num_classes=data.num_classes, **recipe.model_kwargs)

    return build


def _write_figures(local, result, recipe, data, out, resize):
    from kcnn import plots
    from kcnn.training.trainer import confusion_matrix

    plots.plot_curves(result.history, os.path.join(out, "curves.png"),
                      title=f"{recipe.model} on {data.name}")
    plots.plot_confusion(confusion_matrix(local, data, resize=resize), data.class_names,
                         os.path.join(out, "confusion.png"))
    kernel = _first_conv_kernel(local)
    if kernel is not None:
        plots.plot_kernels(kernel, os.path.join(out, "kernels.png"))


def _data_report(data, config, recipe):
    """How the images were read: resize mode, augmentation, the files skipped as unreadable."""
    from kcnn.training.trainer import default_resize

    skipped = list(getattr(data, "skipped_files", []))
    return {"resize": config.resize or default_resize(data),
            "augment": recipe.augment, "skipped": len(skipped),
            "skipped_files": skipped}


def execute(config: RunConfig, *, resume: bool = False, log=print) -> dict:
    """Run ``config`` to the end and return the report (also written to ``report.json``).

    Raises:
        RunError: bad model/recipe/data/output folder (nothing trained).
        kcnn.training.TrainingDiverged: the loss became NaN.
        kcnn.training.DistributionError: the distribution is impossible here.
    """
    import keras

    from kcnn.files import write_json
    from kcnn.models import summary
    from kcnn.training import precision
    from kcnn.training import distribution as kdistribution
    from kcnn.training.trainer import fit
    from kcnn.training.html_report import write_html_report

    started = time.perf_counter()
    out = config.out
    recipe, data = _recipe_and_data(config)
    os.makedirs(out, exist_ok=True)
    if not resume:
        write_json(os.path.join(out, CONFIG_FILE), config.to_dict())
    distribution = kdistribution.make_distribution(config.distribute)
    policy = precision.set_precision(config.mixed_precision)
    mixed = policy != "float32"
    keras.utils.set_random_seed(config.seed)
    build = _model_builder(config, recipe, data)
    try:
        with distribution.scope():
            model = build()
    except ValueError as e:  # e.g. an image size too small for the architecture
        raise RunError(str(e)) from None
    if mixed:
        precision.float32_output(model)

    result = fit(model, data, recipe, out=out, seed=config.seed, verbose=config.verbose,
                 jit_compile=_jit(config.jit_compile),
                 steps_per_execution=config.steps_per_execution,
                 early_stopping=config.early_stopping, distribution=distribution,
                 validation=config.validation,
                 resize=config.resize)
    report = {
        **result.metrics,
        "model": recipe.model,
        "conv": config.conv,
        "dataset": data.name,
        "class_names": list(data.class_names),
        "recipe": recipe.to_dict(),
        "seed": config.seed,
        "mixed_precision": precision.check_precision(config.mixed_precision),
        "jit_compile": config.jit_compile,
        "keras_version": keras.__version__,
        "data": _data_report(data, config, recipe),
    }
    if not distribution.is_chief:  # other workers train but leave the outputs to worker 0
        return report

    model.save(os.path.join(out, "model.keras"))
    # The other workers have finished, so nothing below may run a collective op (a multi-worker
    # predict would wait for them forever): use a single-process copy of the trained model.
    local = model
    if distribution.kind == "multiworker":
        local = _twin(model, build)
        if mixed:
            precision.float32_output(local)
    _write_figures(local, result, recipe, data, out, config.resize)
    if config.export:
        exportable = _twin(local, build, policy="float32") if mixed else local
        report["onnx"] = _export(exportable, config, data, out, recipe)
    report["seconds"] = time.perf_counter() - started
    write_json(os.path.join(out, "report.json"), report)
    write_html_report(out, report, summary=summary(local))
    report["summary_line"] = result.summary_line()
    return report
