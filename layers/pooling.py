"""Explicit 2-D max and average pooling layers.

Both layers combine strided slices of the (padded) input with `keras.ops` element-wise
operations (`where` for the maximum, `add` for the average); no backend pooling primitive is used.
`padding` is either Keras's `"valid"` / `"same"` (results equal to `keras.layers.MaxPooling2D` /
`AveragePooling2D`, where `"same"` average pooling divides by the number of real, unpadded
elements in each window) or explicit zero padding as in `torch.nn.MaxPool2d` / `AvgPool2d`: an int, a pair `(ph, pw)` or
`((top, bottom), (left, right))`; max pooling then pads with −inf (in practice the lowest finite
value of the dtype) and average pooling counts the padded zeros (`count_include_pad=True`).
"""
import keras
import ml_dtypes
import numpy as np
from keras import ops
from kcnn.layers import validation
from kcnn.layers.keras_compat import standardize_data_format

__all__ = ["MaxPool2D", "AvgPool2D"]


def standardize_pool_padding(padding, pool_size):
    """Returns `"valid"`, `"same"` or `((top, bottom), (left, right))` for a pooling `padding`.

    Explicit padding must not exceed half the pool size on any side (the rule of
    `torch.nn.MaxPool2d`): a wider pad would create windows holding padding only.
    """
    pairs = validation.standardize_padding(padding)
    if isinstance(pairs, str):
        return pairs
    for axis, (pair, k) in enumerate(zip(pairs, pool_size)):
        if max(pair) * 2 > k:
            raise ValueError(
                "The explicit `padding` must be at most half of `pool_size` on every side. "
                f"Received padding={padding!r} and pool_size={tuple(pool_size)}: "
                f"axis {axis} pads {pair} around a window of {k}."
            )
    return pairs


def _reduce_axis(x, axis, pool, stride, combine):
    """Y[..., i, ...] = combine over a < pool of X[..., i·stride + a, ...] along `axis`."""
    index = [slice(None)] * len(x.shape)
    result = None
    for a in range(pool):
        # Negative stops give exactly the output length without knowing the input size.
        index[axis] = slice(a, (a - pool + 1) or None, stride)
        window = x[tuple(index)]
        result = window if result is None else combine(result, window)
    return result


def _lowest(dtype):
    """The most negative finite value of a float dtype: the padding of max pooling.

    It acts as −inf (every window holds at least one real input, which is ≥ it), but stays finite
    because ONNX converters such as tf2onnx lower `where(c, x, y)` to c·x + (1 − c)·y, and
    0 · −inf is NaN.
    """
    return float(ml_dtypes.finfo(keras.backend.standardize_dtype(dtype)).min)


def _size(x, axis):
    """The static size of `x` along `axis`, or a scalar tensor if it is known only at run time."""
    size = x.shape[axis]
    if size is None:
        return ops.shape(x)[axis]
    # int(): torch.jit tracing (used by ONNX export) reports sizes as 0-d tensors.
    return int(size)


class _Pool2D(keras.layers.Layer):
    """Shared argument handling, padding and window slicing of the explicit pooling layers."""

    def __init__(
        self,
        pool_size=(2, 2),
        strides=None,
        padding="valid",
        data_format=None,
        name=None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.pool_size = validation.standardize_tuple(pool_size, 2, "pool_size")
        strides = self.pool_size if strides is None else strides
        self.strides = validation.standardize_tuple(strides, 2, "strides")
        self.padding = standardize_pool_padding(padding, self.pool_size)
        self.data_format = standardize_data_format(data_format)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _spatial_axes(self):
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _pads(self, inputs):
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        if self.padding == "same":
            return tuple(
                validation.same_padding(_size(inputs, axis), k, s)
                for axis, k, s in zip(self._spatial_axes, self.pool_size, self.strides)
            )
        return self.padding

    def _pad(self, inputs, pads, value):
        if all(isinstance(v, int) and v == 0 for pair in pads for v in pair):
            return inputs
        h_axis, w_axis = self._spatial_axes
        widths = [(0, 0)] * 4
        widths[h_axis], widths[w_axis] = pads
        return ops.pad(inputs, widths, constant_values=value)

    def _reduce_windows(self, padded, combine):
        """Combines each pool window of `padded` with the binary `combine` (max or +).

        Both reductions are separable, so the width is reduced first and then the height: a
        pool_h × pool_w window costs pool_h + pool_w strided slices instead of pool_h · pool_w.
        """
        h_axis, w_axis = self._spatial_axes
        (k_h, k_w), (s_h, s_w) = self.pool_size, self.strides
        rows = _reduce_axis(padded, w_axis, k_w, s_w, combine)
        return _reduce_axis(rows, h_axis, k_h, s_h, combine)

    def _tiled_reduce(self, padded, reduce):
        """``reduce`` (e.g. ``ops.sum``) over non-overlapping windows (stride == pool), or None.

        ``padded`` is cropped to whole windows and reduced in two reshapes: the kh rows of each
        window become one axis (reduced), then the kw columns (reduced). Both gradients are plain
        broadcasts, where strided slices cost one padded copy per window offset; two 3-D
        reductions run 2× faster on TensorFlow-CPU than one over two axes of a 6-D view.
        Needs static spatial and channel sizes.
        """
        if tuple(self.strides) != tuple(self.pool_size):
            return None
        h_axis, w_axis = self._spatial_axes
        last = self.data_format == "channels_last"
        sizes = [padded.shape[axis] for axis in (h_axis, w_axis, 3 if last else 1)]
        if any(not isinstance(v, int) for v in sizes):
            return None
        (h, w, c), (kh, kw) = sizes, self.pool_size
        ho, wo = h // kh, w // kw
        if (ho * kh, wo * kw) != (h, w):
            padded = padded[:, : ho * kh, : wo * kw] if last else padded[:, :, : ho * kh, : wo * kw]
        if last:  # (N, H, W, C): rows of windows, then columns
            rows = reduce(ops.reshape(padded, (-1, kh, wo * kw * c)), axis=1)
            out = reduce(ops.reshape(rows, (-1, kw, c)), axis=1)
            return ops.reshape(out, (-1, ho, wo, c))
        rows = reduce(ops.reshape(padded, (-1, kh, wo * kw)), axis=1)  # (N·C·Ho, Wo·kw)
        out = reduce(ops.reshape(rows, (-1, kw)), axis=1)
        return ops.reshape(out, (-1, c, ho, wo))

    def build(self, input_shape):
        self.compute_output_shape(input_shape)  # raises early for a pool larger than the input
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ValueError(
                f"Input 0 of layer '{self.name}' must be 4-D (batch, spatial, spatial, channels "
                f"or batch, channels, spatial, spatial). Received input_shape={input_shape}"
            )
        out = list(input_shape)
        for i, axis in enumerate(self._spatial_axes):
            n, k, s = input_shape[axis], self.pool_size[i], self.strides[i]
            if n is None:
                continue
            if self.padding == "same":
                out[axis] = (n + s - 1) // s
                continue
            padded = n if self.padding == "valid" else n + sum(self.padding[i])
            if padded < k:
                after = "" if padded == n else f" ({padded} after padding)"
                raise ValueError(
                    f"`pool_size`={self.pool_size} is larger than the padded input of layer "
                    f"'{self.name}': spatial axis {axis} has size {n}{after}. "
                    f"Received input_shape={input_shape}, padding={self.padding!r}."
                )
            out[axis] = (padded - k) // s + 1
        return tuple(out)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
            }
        )
        return config

    def _cast_input(self, inputs):
        inputs = ops.convert_to_tensor(inputs)
        if not keras.backend.is_float_dtype(inputs.dtype):
            inputs = ops.cast(inputs, self.compute_dtype)
        return inputs


_ARGS_DOC = """
    Args:
        pool_size: int or tuple of 2 positive ints `(pool_h, pool_w)`, the window size.
        strides: int, tuple of 2 positive ints, or `None` (the default, meaning `pool_size`).
        padding: `"valid"` (no padding) or `"same"` (output size `ceil(n / stride)`, as
            Keras), both case-insensitive; or explicit zero padding like PyTorch: an int `p`,
            a pair `(p_h, p_w)` or `((top, bottom), (left, right))`, each at most half the
            pool size. Output size along an axis: `floor((n + p_total - pool) / stride) + 1`.
        data_format: `"channels_last"` (`(batch, H, W, C)`) or `"channels_first"`
            (`(batch, C, H, W)`); defaults to `keras.config.image_data_format()`.
        name: layer name.
        **kwargs: other `keras.layers.Layer` arguments (e.g. `dtype`).
"""


@keras.saving.register_keras_serializable(package="kcnn")
class MaxPool2D(_Pool2D):
    """Explicit 2-D max pooling: Y[n, i, j, c] = max_{a, b} X[n, i·s_h + a, j·s_w + b, c].

    The maximum over the shifted, strided slices of the padded input (along the width, then along
    the height), built with element-wise `keras.ops.where` so that the gradient of each output goes
    to exactly one input: the first maximum of its window in row-major order, as in
    `torch.nn.MaxPool2d`. Padded positions hold the lowest finite value of the dtype (−inf in
    effect), so they never win.
    """

    def call(self, inputs):
        """Max over each window of the (padded) ``inputs``."""
        inputs = self._cast_input(inputs)
        padded = self._pad(inputs, self._pads(inputs), _lowest(inputs.dtype))
        # Strict ">" keeps the earlier maximum on ties; `where` routes the gradient to one branch.
        return self._reduce_windows(padded, lambda best, x: ops.where(x > best, x, best))


@keras.saving.register_keras_serializable(package="kcnn")
class AvgPool2D(_Pool2D):
    """Explicit 2-D average pooling: Y[n, i, j, c] = Σ_{a,b} X[n, i·s_h + a, j·s_w + b, c] / count.

    `count` is `pool_h · pool_w` for `"valid"` and explicit padding (padded zeros count, as
    `torch.nn.AvgPool2d(count_include_pad=True)`), and the number of unpadded elements in the
    window for `"same"` (as `keras.layers.AveragePooling2D`). float16/bfloat16 inputs are summed
    in float32 and the result is cast back.
    """

    def call(self, inputs):
        """Average over each window of the (padded) ``inputs``."""
        inputs = self._cast_input(inputs)
        out_dtype = inputs.dtype
        if keras.backend.standardize_dtype(out_dtype) in ("float16", "bfloat16"):
            inputs = ops.cast(inputs, "float32")
        pads = self._pads(inputs)
        total = self._window_sum(self._pad(inputs, pads, 0.0))
        if self.padding == "same":
            total = ops.divide(total, self._real_counts(inputs, pads))
        else:
            total = total / float(self.pool_size[0] * self.pool_size[1])
        return ops.cast(total, out_dtype)

    def _real_counts(self, inputs, pads):
        """Number of unpadded inputs in each "same" window, shaped to broadcast over the output."""
        sizes = [_size(inputs, axis) for axis in self._spatial_axes]
        if not all(isinstance(n, int) for n in sizes):
            # Spatial size known only at run time: pool a map of ones (one image, one channel).
            first = inputs[:1, :, :, :1] if self.data_format == "channels_last" else inputs[:1, :1]
            return self._window_sum(self._pad(ops.ones_like(first), pads, 0.0))
        per_axis = []
        for n, k, s, (before, _) in zip(sizes, self.pool_size, self.strides, pads):
            starts = np.arange((n + s - 1) // s) * s - before
            per_axis.append(np.minimum(starts + k, n) - np.maximum(starts, 0))
        counts = np.outer(*per_axis).astype("float32")
        if self.data_format == "channels_last":
            return counts[None, :, :, None]
        return counts[None, None]

    def _window_sum(self, padded):
        tiled = self._tiled_reduce(padded, ops.sum)
        if tiled is not None:
            return tiled
        return self._reduce_windows(padded, ops.add)


# The shared argument list, appended to each layer's own docstring.
MaxPool2D.__doc__ += _ARGS_DOC
AvgPool2D.__doc__ += _ARGS_DOC
