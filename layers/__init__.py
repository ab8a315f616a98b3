"""kcnn.layers: explicit cross-correlation and pooling written with ``keras.ops``.

No convolution or pooling primitive is called: every output is the sliding-window formula
Y[i, j] = Σa Σb X[i + a, j + b]·K[a, b] (+ bias), computed from strided slices.

Modules: ``cross_correlation`` / ``pooling`` / ``corr2d`` (the public layers and function),
``validation`` (argument and padding helpers, also for kcnn core), ``reference`` (the formula,
the tests' oracle), ``correlation`` (the one function ``call`` uses: the windows times the kernel,
with the hand-written backward), ``dispatch`` (the one choice of arrangement, with the figure
behind each), ``correlation_torch`` (the eager PyTorch arrangement), ``keras_compat`` (the only
private Keras imports).
"""

from kcnn.layers.corr2d import corr2d
from kcnn.layers.cross_correlation import CrossCorrelation2D
from kcnn.layers.pooling import AvgPool2D, MaxPool2D

__all__ = ["AvgPool2D", "CrossCorrelation2D", "MaxPool2D", "corr2d"]
