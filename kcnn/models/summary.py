"""Layer-by-layer table of a Keras model: output shape, parameters, multiply-accumulates, memory.

Cost model (per example, batch size 1):

* a convolution (``Conv1D``/``Conv2D``/``Conv3D`` and subclasses such as
  ``kcnn.layers.CrossCorrelation2D``) costs ``c_out * (c_in / groups) * k_h * k_w * h_out * w_out``
  MACs — the kernel's element count times the number of output positions;
* a dense layer costs ``in * out`` MACs per position of its input's leading axes;
* other layers (pooling, activations, padding, dropout, flatten) count 0 MACs; bias additions are
  not counted either.

Activation memory is the sum of every layer's output size (the input image excluded) in the layer's
output dtype — what a forward pass for one example materialises, an upper bound on what inference
keeps alive and a lower bound on what training stores for the backward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

__all__ = ["LayerRow", "ModelSummary", "summary", "layer_macs"]


@dataclass(frozen=True)
class LayerRow:
    """One row of the table; ``output_shape`` excludes the batch axis (None if unknown)."""

    name: str
    kind: str
    output_shape: tuple | None
    params: int
    macs: int
    activation_bytes: int


@dataclass(frozen=True)
class ModelSummary:
    """Result of ``summary(model)``; ``str()`` renders the table."""

    name: str
    input_shape: tuple
    rows: list = field(default_factory=list)
    trainable_params: int = 0
    non_trainable_params: int = 0

    @property
    def total_params(self):
        return self.trainable_params + self.non_trainable_params

    @property
    def total_macs(self):
        return sum(row.macs for row in self.rows)

    @property
    def activation_bytes(self):
        return sum(row.activation_bytes for row in self.rows)

    def to_dict(self):
        """JSON-friendly form (for ``kcnn-summary --json``)."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [
                {"name": r.name, "type": r.kind,
                 "output_shape": None if r.output_shape is None else list(r.output_shape),
                 "params": r.params, "macs": r.macs, "activation_bytes": r.activation_bytes}
                for r in self.rows
            ],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_macs": self.total_macs,
            "activation_bytes": self.activation_bytes,
        }

    def to_text(self):
        header = ("Layer (type)", "Output shape", "Params", "MACs")
        body = [(f"{r.name} ({r.kind})", _shape_text(r.output_shape), f"{r.params:,}",
                 f"{r.macs:,}") for r in self.rows]
        widths = [max(len(line[i]) for line in [header] + body) for i in range(4)]

        def fmt(line):
            return "  ".join([line[0].ljust(widths[0]), line[1].ljust(widths[1]),
                              line[2].rjust(widths[2]), line[3].rjust(widths[3])])

        rule = "-" * len(fmt(header))
        lines = [f'Model: "{self.name}"  input {_shape_text(self.input_shape)}', rule,
                 fmt(header), rule, *map(fmt, body), rule,
                 f"Total params: {self.total_params:,} ({_bytes_text(self.total_params * 4)} "
                 "as float32)",
                 f"Trainable params: {self.trainable_params:,}",
                 f"Non-trainable params: {self.non_trainable_params:,}",
                 f"Total MACs: {self.total_macs:,} ({_si(self.total_macs)}MAC) per example",
                 f"Activation memory: {_bytes_text(self.activation_bytes)} per example"]
        return "\n".join(lines)

    __str__ = to_text

    def __repr__(self):
        return self.to_text()


def _shape_text(shape):
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _bytes_text(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024


def _si(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} "


def _count(weights):
    return int(sum(math.prod(w.shape) for w in weights))


def layer_macs(layer, output_shape):
    """Multiply-accumulates of ``layer`` for one example whose output shape (no batch) is given."""
    if output_shape is None or any(d is None for d in output_shape):
        return 0
    kernel = getattr(layer, "kernel", None)
    if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv1D | keras.layers.Conv3D) \
            and not isinstance(layer, keras.layers.Conv2DTranspose | keras.layers.Conv1DTranspose
                               | keras.layers.Conv3DTranspose):
        channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
        spatial = output_shape[1:] if channels_first else output_shape[:-1]
        # kernel = (k..., c_in / groups, c_out): its size is c_out * c_in/groups * prod(k).
        return int(math.prod(kernel.shape) * math.prod(spatial))
    if isinstance(layer, keras.layers.Dense):
        return int(math.prod(kernel.shape) * math.prod(output_shape[:-1]))
    return 0


def _output_shape(layer):
    try:
        out = layer.output
    except (AttributeError, ValueError):  # shared layer or no single output
        return None
    if isinstance(out, (list, tuple)):
        return None
    return tuple(out.shape[1:])


def summary(model):
    """Layer table of a built ``keras.Model``: output shape, params, MACs and activation memory.

    Returns a ``ModelSummary`` (print it for the table; fields and ``to_dict()`` for programs).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model; received {type(model).__name__}")
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built; call it on an input or build it first")
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = _output_shape(layer)
        if shape is None or any(d is None for d in shape):
            act = 0
        else:
            itemsize = np.dtype(keras.backend.standardize_dtype(layer.compute_dtype)).itemsize
            act = math.prod(shape) * itemsize
        macs = layer_macs(layer, shape)
        if isinstance(layer, keras.Model):  # nested model: sum its own table's MACs
            macs = summary(layer).total_macs
        rows.append(LayerRow(layer.name, type(layer).__name__, shape,
                             _count(layer.weights), macs, act))
    try:
        input_shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        input_shape = ()
    return ModelSummary(model.name, input_shape, rows,
                        _count(model.trainable_weights), _count(model.non_trainable_weights))
