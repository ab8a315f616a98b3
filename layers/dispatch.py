"""The one place that decides which arrangement of the cross-correlation formula runs.

:func:`choose` is a pure function of the layer's shapes, the backend and the call's context; it
returns a :class:`Plan` whose ``path`` names the arrangement:

* ``"reference"`` — ``kcnn.layers.reference``: one slice and matmul per kernel offset, autodiff.
  Runs only when asked for (``algorithm="reference"``).
* ``"torch"`` — eager PyTorch with autograd off (inside the hand-written backward pass, or under
  ``torch.no_grad`` as in ``predict``), one group: ``correlation_torch``'s reused patch buffer.
* ``"im2col"`` — every window of every example gathered into one patch matrix, one matmul.
  Chosen while that matrix holds at most :data:`MAX_PATCH_ELEMENTS` elements.
* ``"bands"`` — larger layers under TensorFlow/JAX: a loop over bands of output rows
  (``correlation_bands``), each band a full-depth im2col. Inference needs a static batch (an
  export traces a symbolic batch and gets ``"kernel_rows"``).
* ``"kernel_rows"`` — larger layers elsewhere: one kernel row of windows at a time (kh matmuls).

The batch size counts as :data:`ASSUMED_BATCH` when it is known only at run time. Training
(``training=True``) uses the hand-written backward pass on every path but ``"reference"``; in a
TensorFlow graph (``model.fit`` at Keras's CPU default runs graph mode without XLA) the plan sets
``xla`` for the paths in :data:`XLA_PATHS`: the layer's forward and each gradient are compiled by
XLA on their own (LeNet's two conv layers, forward + backward, batch 256: 31 → 24 ms on this
2-core CPU); the others run as plain graph ops.
``algorithm`` other than ``"auto"`` forces that arrangement (``"im2col"`` still runs as
``"torch"`` where that applies: it is the same patch matrix, gathered in chunks).

:func:`recorded` collects the plans chosen while it is active (the tests use it to check which
path really ran).
"""

import contextlib
from typing import NamedTuple, Optional

ALGORITHMS = ("auto", "reference", "im2col", "kernel_rows", "bands")

# The most elements one patch matrix (im2col buffer) may hold before the work is split.
MAX_PATCH_ELEMENTS = 1 << 23
# Keras's default batch size: how many examples to plan for when the batch is dynamic.
ASSUMED_BATCH = 32

# Arrangements that TensorFlow graph mode compiles with XLA, from measurements (``fit`` at Keras
# defaults, 2-core CPU, interleaved fresh processes): the one-matmul im2col of small layers gains
# (LeNet's two layers 31 → 24 ms a step); the band loop of a VGG block (64→64, 112², batch 32,
# 3-step fit) takes 6.0–6.8 s compiled vs 5.0–7.5 s plain (no reliable difference) at 2.17 GiB
# peak RSS vs 2.59–2.66 GiB plain (builtin Conv2D: 1.90 GiB) — plain graph ops copy the whole
# output for each band's slice_update. Paths not listed run as plain graph ops.
XLA_PATHS = ("im2col", "bands")

_recorders = []


class Plan(NamedTuple):
    """Which arrangement runs: ``path`` (see the module doc) and, for ``"bands"``, ``band_rows``."""

    path: str
    band_rows: Optional[int] = None
    hand_written_backward: bool = False
    xla: bool = False


def planned_batch(batch):
    """The batch size to plan memory for: the static one, or :data:`ASSUMED_BATCH`."""
    return batch if isinstance(batch, int) else ASSUMED_BATCH


def patch_elements(batch, out_hw, kernel_hw, channels):
    """Elements of the full im2col matrix: N·Ho·Wo·kh·kw·C."""
    return planned_batch(batch) * out_hw[0] * out_hw[1] * kernel_hw[0] * kernel_hw[1] * channels


def band_rows(batch, out_hw, kernel_hw, channels):
    """Output rows per band: the largest divisor of Ho whose patches fit the budget (≥ 1)."""
    per_row = patch_elements(batch, (1, out_hw[1]), kernel_hw, channels)
    fitting = [r for r in range(1, out_hw[0]) if out_hw[0] % r == 0 and r * per_row <= MAX_PATCH_ELEMENTS]
    return max(fitting, default=1)


def choose(*, backend, training, algorithm, batch, out_hw, kernel_shape, groups, torch_autograd_off=False,
           tf_graph=False):
    """The :class:`Plan` for one call of the layer.

    Args:
        backend: ``"tensorflow"``, ``"jax"`` or ``"torch"``.
        training: True when the hand-written backward pass is wanted (a training call).
        algorithm: one of :data:`ALGORITHMS`.
        batch: static batch size, or None.
        out_hw: (Ho, Wo) output size.
        kernel_shape: (kh, kw, C/g, F).
        groups: channel groups.
        torch_autograd_off: on PyTorch, True when the forward pass runs eagerly with autograd
            off and is not being traced for export (always the case inside the hand-written
            backward's forward function).
        tf_graph: on TensorFlow, True while a graph is traced (``model.fit``'s train function).
    """
    kh, kw, cg, _ = kernel_shape
    if algorithm == "reference":
        plan = Plan("reference")
    else:
        fits = patch_elements(batch, out_hw, (kh, kw), cg * groups) <= MAX_PATCH_ELEMENTS
        torch_ok = backend == "torch" and groups == 1 and torch_autograd_off
        loop_ok = backend != "torch" and (training or isinstance(batch, int))
        if algorithm == "auto":
            if torch_ok:
                algorithm = "im2col"
            elif fits:
                algorithm = "im2col"
            else:
                algorithm = "bands" if loop_ok else "kernel_rows"
        if algorithm == "im2col" and torch_ok:
            plan = Plan("torch", hand_written_backward=training)
        elif algorithm == "bands":
            rows = band_rows(batch, out_hw, (kh, kw), cg * groups)
            plan = Plan("bands", band_rows=rows, hand_written_backward=training)
        else:
            plan = Plan(algorithm, hand_written_backward=training)
    if plan.hand_written_backward and backend == "tensorflow" and tf_graph and plan.path in XLA_PATHS:
        plan = plan._replace(xla=True)
    return plan


def note(plan):
    """Hand ``plan`` to every active :func:`recorded` block (the layer calls this once per call)."""
    for record in _recorders:
        record.append(plan)


@contextlib.contextmanager
def recorded():
    """Collect every :class:`Plan` chosen inside the ``with`` block into the yielded list."""
    plans = []
    _recorders.append(plans)
    try:
        yield plans
    finally:
        _recorders.remove(plans)
