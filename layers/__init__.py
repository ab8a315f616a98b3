"""kcnn.layers: explicit cross-correlation and pooling written with ``keras.ops``.

No convolution or pooling primitive is called: every output is the sliding-window formula
Y[i, j] = Σa Σb X[i + a, j + b]·K[a, b] (+ bias), computed from strided slices.

Modules: ``cross_correlation`` / ``pooling`` (the public layers), ``corr2d`` (the formula as
written: the public function and its batched form, the oracle), ``validation`` (argument and padding
helpers, also for kcnn core), ``correlation`` (the one function ``call`` uses: the windows times the
kernel, with the hand-written backward), ``dispatch`` (the one choice of arrangement, with the figure
behind each), ``correlation_torch`` (the eager PyTorch arrangement), ``keras_compat`` (the only private
Keras imports), ``introspection`` (the one layer walk).
"""

from kcnn.layers.corr2d import corr2d
from kcnn.layers.cross_correlation import CrossCorrelation2D
from kcnn.layers.pooling import AvgPool2D, MaxPool2D

__all__ = ["AvgPool2D", "CrossCorrelation2D", "MaxPool2D", "corr2d"]
