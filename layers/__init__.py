"""kcnn.layers: explicit cross-correlation and pooling written with ``keras.ops``.

No convolution or pooling primitive is called: every output is the sliding-window formula
Y[i, j] = Σa Σb X[i + a, j + b]·K[a, b] (+ bias), computed from strided slices.

Modules: ``cross_correlation`` / ``pooling`` (the public layers), ``corr2d`` (the formula as
written, the oracle), ``correlation`` (what ``call`` uses, with the hand-written backward),
``dispatch`` (which arrangement runs, and its figures), ``correlation_im2col`` / ``_bands`` /
``_toeplitz`` / ``_torch`` (the arrangements), ``validation``, ``keras_compat`` (private Keras).
"""

from kcnn.layers.corr2d import corr2d
from kcnn.layers.cross_correlation import CrossCorrelation2D
from kcnn.layers.pooling import AvgPool2D, MaxPool2D

__all__ = ["AvgPool2D", "CrossCorrelation2D", "MaxPool2D", "corr2d"]
