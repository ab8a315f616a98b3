"""Which convolution implementation a model uses: the one layer walk and conv-kind test of kcnn.

Both ``kcnn.models`` and ``kcnn.export`` (which must not import kcnn's builders) ask this module, so
a model is classified the same way everywhere.
"""
import keras

from kcnn.layers.cross_correlation import CrossCorrelation2D


def iter_layers(model):
    """Every layer of ``model`` depth-first, nested models and their layers included, in order."""
    for layer in getattr(model, "layers", None) or ():
        yield layer
        yield from iter_layers(layer)


def is_convolution(layer):
    """True for Keras convolution layers (Conv1D/2D/3D, depthwise, transposed) and kcnn's own."""
    return isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                              keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                              keras.layers.Conv2DTranspose, CrossCorrelation2D))


def conv_kind(model):
    """``"explicit"``, ``"builtin"``, ``"mixed"`` (both kinds) or ``"none"`` (no convolution).

    A convolution is explicit when it is ``kcnn.layers.CrossCorrelation2D``; every other Keras
    convolution layer counts as built-in.
    """
    kinds = {"explicit" if isinstance(layer, CrossCorrelation2D) else "builtin"
             for layer in iter_layers(model) if is_convolution(layer)}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"
