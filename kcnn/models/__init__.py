"""Model builders: LeNet, AlexNet and VGG with a built-in / explicit convolution switch.

Every builder describes its network as data (``specs``: a list of small layer tuples, like
torchvision's VGG ``cfgs``, one module per family) and ``assembly`` turns it into an uncompiled
functional ``keras.Model`` whose last layer, ``logits``, outputs unnormalised class scores (compile
with ``from_logits=True``). ``registry`` maps names to builders, ``convert`` moves weights between
the two conv kinds, ``summary`` prints the layer table and ``saving.load`` reads a saved ``.keras``
model back with kcnn's layers registered.

Example::

    import keras, kcnn.models
    model = kcnn.models.build("lenet", conv="explicit")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    model.save("model.keras")
    same = kcnn.models.load("model.keras")  # in any later script: no other import needed
"""
from kcnn.export.introspection import conv_kind
from kcnn.models.families.alexnet import alexnet
from kcnn.models.checks import CONVS
from kcnn.models.convert import convert
from kcnn.models.families.lenet import lenet
from kcnn.models.registry import available, build, min_input_size
from kcnn.models.saving import load
from kcnn.models.summary import summary
from kcnn.models.families.vgg import VGG_ARCHS, vgg

__all__ = [
    "CONVS", "VGG_ARCHS", "lenet", "alexnet", "vgg", "build", "available", "convert",
    "conv_kind", "load", "min_input_size", "summary",
]
