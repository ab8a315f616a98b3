"""Triton Inference Server model repository for a kcnn ONNX file.

Layout (https://docs.nvidia.com/deeplearning/triton-inference-server/): ::

    REPO/<name>/config.pbtxt
    REPO/<name>/labels.txt          (class names, for Triton's classification extension)
    REPO/<name>/<version>/model.onnx

``config.pbtxt`` selects the onnxruntime backend, declares ``images`` / ``logits`` with their
per-example dims (Triton adds the batch dimension itself when ``max_batch_size > 0``) and turns
on dynamic batching, which is Triton's server-side micro-batching.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil

from kcnn.export import metadata as meta
from kcnn.export.checks import check_positive
from kcnn.export.staging import staging_dir

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def render_config(name, input_name, input_dims, output_name, num_classes, *, max_batch_size=64,
                  max_queue_delay_microseconds=100, preferred_batch_sizes=None,
                  label_filename="labels.txt", instance_count=1):
    """The text of a Triton ``config.pbtxt`` (protobuf text format) for an image classifier."""
    dims = ", ".join(str(int(d)) for d in input_dims)
    preferred = ""
    if preferred_batch_sizes:
        preferred = (f"  preferred_batch_size: [ "
                     f"{', '.join(str(int(b)) for b in preferred_batch_sizes)} ]\n")
    label = f'    label_filename: "{label_filename}"\n' if label_filename else ""
    return (
        f'name: "{name}"\n'
        f'platform: "onnxruntime_onnx"\n'
        f'backend: "onnxruntime"\n'
        f"max_batch_size: {int(max_batch_size)}\n"
        f"input [\n"
        f"  {{\n"
        f'    name: "{input_name}"\n'
        f"    data_type: TYPE_FP32\n"
        f"    dims: [ {dims} ]\n"
        f"  }}\n"
        f"]\n"
        f"output [\n"
        f"  {{\n"
        f'    name: "{output_name}"\n'
        f"    data_type: TYPE_FP32\n"
        f"    dims: [ {int(num_classes)} ]\n"
        f"{label}"
        f"  }}\n"
        f"]\n"
        f"dynamic_batching {{\n"
        f"{preferred}"
        f"  max_queue_delay_microseconds: {int(max_queue_delay_microseconds)}\n"
        f"}}\n"
        f"instance_group [\n"
        f"  {{\n"
        f"    count: {int(instance_count)}\n"
        f"    kind: KIND_AUTO\n"
        f"  }}\n"
        f"]\n"
    )


def write_triton_repo(onnx_path, repo_dir, *, name=None, version=1, max_batch_size=64,
                      max_queue_delay_microseconds=100, preferred_batch_sizes=None,
                      instance_count=1):
    """Add the ONNX model at ``onnx_path`` to the Triton model repository ``repo_dir``.

    Input/output names, dims and labels are read from the file (see
    :class:`kcnn.export.OnnxPredictor`). The model folder is assembled in a temporary folder
    inside ``repo_dir`` and moved into place; an existing ``<name>`` folder has its
    ``config.pbtxt``, ``labels.txt`` and ``<version>/model.onnx`` replaced (other versions
    are kept).

    Args:
        onnx_path: a kcnn ONNX file (or any single-input NHWC float classifier).
        repo_dir: repository root (created if missing).
        name: model name in the repository (default: the file's ``kcnn.model`` metadata, else
            the file stem); letters, digits, ``_``, ``.`` and ``-`` only.
        version: integer version folder.
        max_batch_size: largest batch Triton forms (must be > 0: the ONNX batch is dynamic).
        max_queue_delay_microseconds: how long dynamic batching waits to fill a batch.
        preferred_batch_sizes: optional list of batch sizes dynamic batching aims for.
        instance_count: model instances per device.

    Returns:
        ``pathlib.Path`` of ``repo_dir/<name>``.
    """
    from kcnn.export.predictor import OnnxPredictor

    predictor = OnnxPredictor(onnx_path, providers=["CPUExecutionProvider"])
    if name is None:
        name = str(predictor.metadata.get(meta.MODEL) or pathlib.Path(onnx_path).stem)
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ValueError(
            f"name must contain only letters, digits, '_', '.' and '-'; received {name!r}.")
    for arg, value in (("version", version), ("max_batch_size", max_batch_size),
                       ("instance_count", instance_count)):
        check_positive(arg, value, integer=True)
    if isinstance(max_queue_delay_microseconds, bool) or not isinstance(
            max_queue_delay_microseconds, int) or max_queue_delay_microseconds < 0:
        raise ValueError(f"max_queue_delay_microseconds must be an integer >= 0; "
                         f"received {max_queue_delay_microseconds!r}.")
    if preferred_batch_sizes is not None:
        preferred_batch_sizes = [check_positive("preferred_batch_sizes", b, integer=True)
                                 for b in preferred_batch_sizes]
        if max(preferred_batch_sizes) > max_batch_size:
            raise ValueError(
                f"preferred_batch_sizes must not exceed max_batch_size={max_batch_size}; "
                f"received {preferred_batch_sizes}.")
    config = render_config(
        name, predictor.input_name, predictor.input_shape, predictor.output_name,
        predictor.num_classes, max_batch_size=max_batch_size,
        max_queue_delay_microseconds=max_queue_delay_microseconds,
        preferred_batch_sizes=preferred_batch_sizes, instance_count=instance_count)

    repo = pathlib.Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    target = repo / name
    with staging_dir(target, "tmp") as tmp:
        staging = pathlib.Path(tmp) / name
        (staging / str(version)).mkdir(parents=True)
        shutil.copyfile(onnx_path, staging / str(version) / "model.onnx")
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        (staging / "labels.txt").write_text("\n".join(predictor.labels) + "\n", encoding="utf-8")
        if not target.exists():
            os.replace(staging, target)
        else:
            (target / str(version)).mkdir(exist_ok=True)
            for rel in (f"{version}/model.onnx", "labels.txt", "config.pbtxt"):
                os.replace(staging / rel, target / rel)
    return target
