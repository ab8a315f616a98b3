"""kcnn.layers: explicit cross-correlation and pooling written with ``keras.ops``.

No convolution or pooling primitive is called: every output is the sliding-window formula
Y[i, j] = Σa Σb X[i + a, j + b]·K[a, b] (+ bias), computed from strided slices: ``corr2d`` (the
formula as written), ``correlation`` (what ``call`` runs), ``dispatch`` (which arrangement, and why).
"""

from kcnn.layers.corr2d import corr2d
from kcnn.layers.cross_correlation import CrossCorrelation2D
from kcnn.layers.pooling import AvgPool2D, MaxPool2D

__all__ = ["AvgPool2D", "CrossCorrelation2D", "MaxPool2D", "corr2d"]
