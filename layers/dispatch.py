"""Which arrangement of the cross-correlation formula runs, and why each exists.

:func:`choose`, a pure function of the shapes, the backend and the call's context, returns the :class:`Plan`
that ``kcnn.layers.correlation`` runs. Each arrangement kept beats the simpler one by ≥ 10 % where it runs
(``kcnn-bench --section conv``, ``arrangements`` rows). Figures: one ``train_on_batch`` step at Keras's defaults,
median of 5, 2-core CPU; LeNet: d2l's, batch 256; large: one 3×3 64→64 layer, 56², b16; VGG block: 112², b32.

* ``"reference"`` — ``corr2d.cross_correlate`` under autodiff: the oracle, only when asked.
* ``"im2col"`` — every window in one patch matrix of at most :data:`MAX_PATCH_ELEMENTS`, one matmul,
  hand-written backward: JAX LeNet 109–127 ms vs reference 152–164 ms.
* ``"kernel_rows"`` — larger layers, one kernel row of windows per matmul: JAX large 556–568 ms vs
  reference 892–1,140 ms; PyTorch with autograd on, peak RSS 1,310 MB vs 1,528 MB.
* ``"torch"`` — eager PyTorch, autograd off, one group (``correlation_torch``): VGG block step
  760–845 ms vs 1,963–2,009 ms with the keras.ops arrangements (:data:`TORCH_MODULE` off).
* ``"toeplitz"`` — narrow inputs with few channels (:func:`toeplitz_pays`), one group, row stride 1:
  LeNet step TF 16.6–17.0 vs im2col 32.9–34.6 ms (in one column block: 18.4–19.8), JAX 14.7 vs 45.2;
  eager PyTorch (its rows a strided view's copy) 21.5–26.9 vs the torch module's 40.9–42.9.
* ``"bands"`` — large layers on TensorFlow and JAX when training (or with a static batch): a loop over bands of
  output rows, memory flat in the image size. VGG block step peak RSS 1,397 MiB vs 2,805 with ``kernel_rows``
  (TensorFlow), JAX 1,306 vs 2,353. ``xla``: a TensorFlow graph's band loop XLA-compiled, 1,397 MiB vs 2,178 as
  plain graph ops (elsewhere it does not pay: LeNet step 27.1 vs 25.1 ms plain).
"""

import contextlib
from typing import NamedTuple

ALGORITHMS = ("auto", "reference", "im2col", "kernel_rows", "bands", "toeplitz")

# The most elements one patch matrix (im2col buffer) may hold before the work is split, on the CPU and on a GPU
# (1 GiB of float32; VGG-11/4 224² b64 fit, JAX, H100: im2col 8,636 vs bands 5,110 examples/s, built-in 10,487).
MAX_PATCH_ELEMENTS, GPU_PATCH_ELEMENTS = 1 << 23, 1 << 28
# In a compiled loop (XLA: JAX, TensorFlow training) a band holds at most the patch budget / BAND_SHARE
# (8 MiB of float32). VGG block train pass: TF+XLA 749–841 ms in 1-row bands vs 954–1,123 in 4-row
# bands, JAX 858–1,063 vs 1,061–1,272; a plain TensorFlow loop pays per iteration (predict 1,019 vs 478).
BAND_SHARE = 4
ASSUMED_BATCH = 32  # Keras's default batch size: what a dynamic batch is planned as.
TF_GRAPH_XLA = True  # False: TensorFlow graphs run the band loop as plain graph ops (kcnn-bench's comparison).
TORCH_MODULE = True  # False: eager PyTorch runs the keras.ops arrangements (kcnn-bench's comparison).
# "toeplitz" in "auto": inputs at most this many kernel widths wide, with at most this many channels,
# and Toeplitz matrices of at most this many elements.
TOEPLITZ_MAX_WIDTHS, TOEPLITZ_MAX_CHANNELS, TOEPLITZ_MAX_ELEMENTS = 8, 8, 1 << 20

_recorders = []


class Plan(NamedTuple):
    """Which arrangement runs (``path``, see the module doc), and how it is differentiated."""
    path: str
    hand_written_backward: bool = False
    xla: bool = False
    band_rows: int | None = None  # output rows per band ("bands" only)


def patch_elements(batch, out_hw, kernel_hw, channels):
    """Elements of the full im2col matrix, N·Ho·Wo·kh·kw·C (a dynamic batch counts as :data:`ASSUMED_BATCH`)."""
    batch = batch if isinstance(batch, int) else ASSUMED_BATCH
    return batch * out_hw[0] * out_hw[1] * kernel_hw[0] * kernel_hw[1] * channels


def choose(*, backend, training, algorithm, batch, out_hw, kernel_shape, groups, strides=(1, 1),
           dilation=(1, 1), torch_autograd_off=False, tf_graph=False, accelerator=False):
    """The :class:`Plan` for one call of the layer. ``algorithm``: one of :data:`ALGORITHMS`; ``training``: the
    hand-written backward is wanted; ``batch``: the static batch size or None; ``out_hw``: (Ho, Wo); ``kernel_shape``:
    (kh, kw, C/g, F); ``torch_autograd_off``: eager PyTorch with autograd off, not exporting; ``tf_graph``: TensorFlow
    tracing a graph (``model.fit``'s train function); ``accelerator``: on a GPU (:data:`GPU_PATCH_ELEMENTS`)."""
    if algorithm == "reference":
        return Plan("reference")
    kh, kw, cg, _ = kernel_shape
    budget = GPU_PATCH_ELEMENTS if accelerator else MAX_PATCH_ELEMENTS
    torch_module = TORCH_MODULE and backend == "torch"
    torch_ok = torch_module and groups == 1 and torch_autograd_off
    if algorithm == "auto":
        fits = patch_elements(batch, out_hw, (kh, kw), cg * groups) <= budget
        loop_ok = not torch_module and (training or isinstance(batch, int))
        algorithm = "im2col" if fits or torch_ok else ("bands" if loop_ok else "kernel_rows")
        if fits and toeplitz_pays(out_hw, kernel_shape, strides, dilation):
            algorithm = "toeplitz"
    if algorithm == "toeplitz" and (groups > 1 or strides[0] > 1):  # where it applies
        algorithm = "im2col"
    if algorithm == "im2col" and torch_ok:  # the same patch matrix, gathered in chunks
        algorithm = "torch"
    xla = TF_GRAPH_XLA and training and backend == "tensorflow" and tf_graph and algorithm == "bands"
    share = BAND_SHARE if xla or backend == "jax" else 1
    rows = band_rows(batch, out_hw, (kh, kw), cg * groups, budget // share) if algorithm == "bands" else None
    return Plan(algorithm, hand_written_backward=training, xla=xla, band_rows=rows)


def toeplitz_pays(out_hw, kernel_shape, strides, dilation):
    """Narrow inputs with few channels: the Toeplitz matmuls' extra work (Wp/kw times the multiplies)
    costs less than gathering kh·kw slices of a few channels each."""
    kh, kw, channels, filters = kernel_shape
    padded_w = (out_hw[1] - 1) * strides[1] + (kw - 1) * dilation[1] + 1  # the columns read
    return (channels <= TOEPLITZ_MAX_CHANNELS and padded_w <= TOEPLITZ_MAX_WIDTHS * kw
            and kh * padded_w * channels * out_hw[1] * filters <= TOEPLITZ_MAX_ELEMENTS)


def band_rows(batch, out_hw, kernel_hw, channels, budget=MAX_PATCH_ELEMENTS):
    """Output rows per band: the largest divisor of Ho whose patches hold at most ``budget`` elements (≥ 1)."""
    per_row = patch_elements(batch, (1, out_hw[1]), kernel_hw, channels)
    fitting = [r for r in range(1, out_hw[0]) if out_hw[0] % r == 0 and r * per_row <= budget]
    return max(fitting, default=1)


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
