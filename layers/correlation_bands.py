"""The ``"bands"`` arrangement (large layers, TensorFlow and JAX): a ``keras.ops.fori_loop`` over
bands of output rows, each gathering its own windows only. A loop, unlike unrolled chunks, reuses
one band's buffers: peak memory stays flat in the image size. Input-gradient bands overlap by
``d·(k−1)`` input rows, hence slice + add + update."""

from keras import ops

from kcnn.layers import correlation_im2col as im2col
from kcnn.layers.corr2d import contract


def _batch(x):
    return n if isinstance(n := ops.shape(x)[0], int) else -1


def _output_band(y, index, rows):
    _, _, wo, filters = ops.shape(y)
    return ops.slice(y, (0, index * rows, 0, 0), (_batch(y), rows, wo, filters))


def _patches(job, xp, index, kernel_hw):
    """The patch matrix of output band ``index``: windows of the padded input rows it reads."""
    rows, stride = job.plan.band_rows, job.strides[0]
    span = (rows - 1) * stride + (kernel_hw[0] - 1) * job.dilation[0] + 1
    _, _, wp, channels = ops.shape(xp)
    band = ops.slice(xp, (0, index * rows * stride, 0, 0), (_batch(xp), span, wp, channels))
    return im2col.windows(band, kernel_hw, job.strides, job.dilation)


def forward(job, xp, kernel):
    """(Y, None): valid cross-correlation (no bias) of padded channels_last ``xp``, one band at a time."""
    rows = job.plan.band_rows

    def body(index, out):
        patches = _patches(job, xp, index, kernel.shape[:2])
        return ops.slice_update(out, (0, index * rows, 0, 0), contract(patches, kernel, job.groups))

    out = ops.zeros((ops.shape(xp)[0], *job.out_hw, kernel.shape[-1]), dtype=xp.dtype)
    return ops.fori_loop(0, job.out_hw[0] // rows, body, out), None


def kernel_gradient(job, xp, dy, kernel_shape, patches=None):
    """dK = Σ over bands of patches(band)ᵀ · dY[band]; XLA on TensorFlow: (dY[band]ᵀ · patches(band))ᵀ with dY
    transposed once before the loop (VGG block 274 vs 361 ms; JAX pays more for it: pass 889–910 vs 857–869 ms)."""
    rows, (_, ho, wo, filters), (kh, kw, cg, _), groups = job.plan.band_rows, ops.shape(dy), kernel_shape, job.groups
    if job.plan.xla:  # (bands, g, F/g, N·rows·Wo)
        dy = ops.reshape(ops.transpose(ops.reshape(dy, (_batch(dy), ho // rows, rows, wo, filters)), (1, 4, 0, 2, 3)),
                         (ho // rows, groups, filters // groups, -1))

    def body(index, grad):
        band = _patches(job, xp, index, (kh, kw))
        if job.plan.xla:
            term = ops.einsum("gfm,mpgc->pcgf", dy[index], ops.reshape(band, (-1, kh * kw, groups, cg)))
            return ops.add(grad, ops.reshape(term, kernel_shape))
        return ops.add(grad, im2col.patches_times_gradient(band, _output_band(dy, index, rows), kernel_shape, groups))

    grad = ops.zeros(kernel_shape, dtype=xp.dtype)  # float32 under mixed precision (see correlation)
    return ops.fori_loop(0, ho // rows, body, grad)


def input_gradient(job, dy, kernel):
    """dXp: at stride 1, each band's window gradients added back into its input rows (else im2col's)."""
    if job.strides != (1, 1):
        return im2col.input_gradient(job, dy, kernel)
    (kh, _, cg, _), rows, (hp, wp) = kernel.shape, job.plan.band_rows, job.padded_hw
    span = rows + (kh - 1) * job.dilation[0]
    size = (_batch(dy), span, wp, cg * job.groups)

    def body(index, dxp):
        contribution = im2col.scatter_input_gradient(
            _output_band(dy, index, rows), kernel, (span, wp), job.dilation, job.groups)
        start = (0, index * rows, 0, 0)
        return ops.slice_update(dxp, start, ops.add(ops.slice(dxp, start, size), contribution))

    dxp = ops.zeros((ops.shape(dy)[0], hp, wp, cg * job.groups), dtype=dy.dtype)
    return ops.fori_loop(0, ops.shape(dy)[1] // rows, body, dxp)
