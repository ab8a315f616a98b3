"""``CrossCorrelation2D``: a drop-in for ``keras.layers.Conv2D`` computed by the explicit formula."""

import keras
from keras import ops

from kcnn.layers import correlation, dispatch, keras_compat, validation


@keras.saving.register_keras_serializable(package="kcnn")
class CrossCorrelation2D(keras.layers.Conv2D):
    """2-D cross-correlation layer computed explicitly with ``keras.ops``.

    ``Y[n, i, j, f] = Σ_a Σ_b Σ_c X[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · K[a, b, c, f] + bias[f]``

    A ``keras.layers.Conv2D`` subclass with its arguments, defaults, checks and error messages,
    weights (``kernel`` ``(kh, kw, in_channels // groups, filters)``, ``bias``), output shape and
    config, so a model can switch between the two and keep its weights; only ``call`` differs. Two more:

    * ``padding`` also takes explicit zero padding (PyTorch / d2l style): an int ``p``, a pair
      ``(ph, pw)`` or ``((top, bottom), (left, right))``; the output length along an axis is then
      ``floor((n + p_total − d·(k − 1) − 1) / s) + 1``.
    * ``algorithm``: how the formula is arranged (``kcnn.layers.dispatch.ALGORITHMS``): ``"auto"``
      (default, picked per call), ``"reference"`` (the formula as written, autodiff), or a named
      arrangement. All compute the same numbers.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", algorithm="auto", **kwargs):
        self.algorithm = validation.standardize_choice(algorithm, "algorithm", dispatch.ALGORITHMS)
        explicit = validation.standardize_explicit_padding(padding)
        super().__init__(filters, kernel_size, strides=strides, padding="valid" if explicit else padding, **kwargs)
        if explicit is not None:
            self.padding = explicit

    @property
    def explicit_padding(self):
        """True when ``padding`` is an explicit ((top, bottom), (left, right)) spec."""
        return not isinstance(self.padding, str)

    def compute_output_shape(self, input_shape):
        if not self.explicit_padding:
            return super().compute_output_shape(input_shape)
        input_shape = tuple(input_shape)
        channels_last = self.data_format == "channels_last"
        spatial = input_shape[1:-1] if channels_last else input_shape[2:]
        out = [None if n is None else validation.output_length(n, k, s, d, sum(pads)) for n, pads, k, s, d
               in zip(spatial, self.padding, self.kernel_size, self.strides, self.dilation_rate)]
        if any(n is not None and n <= 0 for n in out):
            raise ValueError(f"Computed output size would be zero or negative. Received `inputs shape={input_shape}`, "
                             f"`kernel_size={self.kernel_size}`, `dilation_rate={self.dilation_rate}`, "
                             f"`strides={self.strides}`, `padding={self.padding}`.")
        return (input_shape[0], *out, self.filters) if channels_last else (input_shape[0], self.filters, *out)

    def _stored_dtype_weights(self):
        """(kernel, bias or None) in their stored dtype (float32 under a mixed policy, so their gradients stay
        float32), the kernel plus LoRA's ``(lora_alpha / lora_rank) · A·B`` when on; read as tensors inside
        the scope (a TensorFlow variable would autocast on later reads)."""
        with keras_compat.AutocastScope(None):
            bias = ops.convert_to_tensor(self.bias.value) if self.use_bias else None
            kernel = ops.convert_to_tensor(keras_compat.stored_kernel(self).value)
            if not self.lora_enabled:
                return kernel, bias
            a, b = (ops.convert_to_tensor(factor.value) for factor in (self.lora_kernel_a, self.lora_kernel_b))
            return ops.add(kernel, ops.multiply(ops.matmul(a, b), self.lora_alpha / self.lora_rank)), bias

    def call(self, inputs, training=None):
        """``Y = corr2d(pad(X), K) + b``, d2l's formula, for every example and channel:
        ``correlation.correlate`` gathers the windows of the padded input, multiplies them by
        the kernel and adds the bias (``training=True``: with the hand-written backward pass)."""
        x = inputs if self.data_format == "channels_last" else ops.transpose(inputs, (0, 2, 3, 1))
        (top, bottom), (left, right) = validation.resolve_padding(
            self.padding, tuple(ops.shape(x)[1:3]), self.kernel_size, self.strides, self.dilation_rate)
        xp = ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))) if top + bottom + left + right else x
        kernel, bias = self._stored_dtype_weights()
        y = correlation.correlate(xp, kernel, self.strides, self.dilation_rate, self.groups,  # corr2d(Xp, K) + b
                                  training=bool(training), algorithm=self.algorithm, bias=bias)
        if self.data_format == "channels_first":
            y = ops.transpose(y, (0, 3, 1, 2))
        return y if self.activation is None else self.activation(y)

    def get_config(self):
        config = super().get_config()
        config["algorithm"] = self.algorithm
        if self.explicit_padding:
            config["padding"] = [list(pair) for pair in self.padding]
        return config
