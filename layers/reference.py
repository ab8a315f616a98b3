"""The reference cross-correlation: the formula itself, in a few lines, differentiated by autodiff.

    Y[n, i, j, f] = Σ_a Σ_b  matmul(Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, :], K[a, b])[f]

One strided slice of the padded input per kernel offset ``(a, b)``, times that offset's
``(in, out)`` weight matrix (block-diagonal over ``groups``), summed. It is the oracle every
fast arrangement is tested against, and ``CrossCorrelation2D(algorithm="reference")`` runs it.
"""

from keras import ops


def offset_slice(xp, a, b, out_hw, strides, dilation):
    """Xp[:, i·s_h + a·d_h, j·s_w + b·d_w, :] for every output position (i, j)."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, strides, dilation
    return xp[:, a * dh : a * dh + (ho - 1) * sh + 1 : sh, b * dw : b * dw + (wo - 1) * sw + 1 : sw, :]


def grouped_matmul(x, weights, groups):
    """x (N, Ho, Wo, C) · weights (C/g, F), block-diagonal over ``groups`` channel groups."""
    if groups == 1:
        return ops.matmul(x, weights)
    cg, filters = weights.shape
    n, ho, wo = ops.shape(x)[:3]
    x = ops.reshape(x, (-1, ho, wo, groups, cg))
    w = ops.reshape(weights, (cg, groups, filters // groups))
    return ops.reshape(ops.einsum("nhwgc,cgf->nhwgf", x, w), (-1, ho, wo, filters))


def cross_correlate(xp, kernel, strides, dilation, groups, out_hw):
    """Valid cross-correlation of padded channels_last ``xp`` with ``kernel`` (kh, kw, C/g, F)."""
    kh, kw = kernel.shape[:2]
    terms = [
        grouped_matmul(offset_slice(xp, a, b, out_hw, strides, dilation), kernel[a, b], groups)
        for a in range(kh)
        for b in range(kw)
    ]
    out = terms[0]
    for term in terms[1:]:
        out = ops.add(out, term)
    return out
