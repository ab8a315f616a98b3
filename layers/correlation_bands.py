"""Large layers under TensorFlow and JAX: the training pass one band of output rows at a time.

When a layer's whole patch matrix would exceed ``dispatch.MAX_PATCH_ELEMENTS``, ``dispatch`` plans
``"bands"``: a loop (``keras.ops.fori_loop``) over bands of ``rows`` output rows, each gathering the
full ``kh·kw·C``-deep windows of its band only. A loop, unlike unrolled chunks, reuses one band's
buffers, so peak memory stays flat in the image size:

* forward: ``Y[band] = patches(band) · K``, written into the output with ``slice_update``;
* kernel gradient: ``dK += patches(band)ᵀ · dY[band]``;
* input gradient (stride 1): each band's window gradients added back into the band's input rows
  (which overlap the next band's by ``d·(k−1)`` rows, hence slice + add + update).
"""

from keras import ops

from kcnn.layers import correlation
from kcnn.layers.corr2d import contract


def _batch(x):
    n = ops.shape(x)[0]
    return n if isinstance(n, int) else -1


def _input_band(xp, index, rows, kernel_h, stride, dilation):
    """The padded input rows read by output band ``index`` (``rows`` output rows)."""
    span = (rows - 1) * stride + (kernel_h - 1) * dilation + 1
    _, _, wp, channels = ops.shape(xp)
    return ops.slice(xp, (0, index * rows * stride, 0, 0), (_batch(xp), span, wp, channels))


def _output_band(y, index, rows):
    _, _, wo, filters = ops.shape(y)
    return ops.slice(y, (0, index * rows, 0, 0), (_batch(y), rows, wo, filters))


def correlate(xp, kernel, strides, dilation, groups, out_hw, rows):
    """Valid cross-correlation (no bias) of padded channels_last ``xp``, ``rows`` output rows at a time."""
    kh, kw, _, filters = kernel.shape

    def body(index, out):
        band = _input_band(xp, index, rows, kh, strides[0], dilation[0])
        patches = correlation.windows(band, (kh, kw), strides, dilation)
        return ops.slice_update(out, (0, index * rows, 0, 0), contract(patches, kernel, groups))

    out = ops.zeros((ops.shape(xp)[0], *out_hw, filters), dtype=xp.dtype)
    return ops.fori_loop(0, out_hw[0] // rows, body, out)


def kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, rows):
    """dK = Σ over bands of patches(band)ᵀ · dY[band]."""
    kh, kw = kernel_shape[:2]

    def body(index, grad):
        band = _input_band(xp, index, rows, kh, strides[0], dilation[0])
        patches = correlation.windows(band, (kh, kw), strides, dilation)
        dy_band = _output_band(dy, index, rows)
        return ops.add(grad, correlation.patches_times_gradient(patches, dy_band, kernel_shape, groups))

    grad = ops.zeros(kernel_shape, dtype=xp.dtype)  # float32 under mixed precision (see correlation)
    return ops.fori_loop(0, ops.shape(dy)[1] // rows, body, grad)


def input_gradient(dy, kernel, padded_hw, dilation, groups, rows):
    """dXp for stride 1: each band's window gradients added back into its input rows."""
    kh, _, cg, _ = kernel.shape
    span = rows + (kh - 1) * dilation[0]
    size = (_batch(dy), span, padded_hw[1], cg * groups)

    def body(index, dxp):
        contribution = correlation.scatter_input_gradient(
            _output_band(dy, index, rows), kernel, (span, padded_hw[1]), dilation, groups)
        start = (0, index * rows, 0, 0)
        return ops.slice_update(dxp, start, ops.add(ops.slice(dxp, start, size), contribution))

    dxp = ops.zeros((ops.shape(dy)[0], *padded_hw, cg * groups), dtype=dy.dtype)
    return ops.fori_loop(0, ops.shape(dy)[1] // rows, body, dxp)
