"""kcnn.models: architectures, parameter counts, builtin/explicit parity, convert, training, errors."""
import keras
import numpy as np
import pytest

from kcnn import models
from kcnn.models.summary import summary as summary_fn

# Small but complete configurations of every registered model (reduced width/dense size so the
# whole file stays fast; their minimum input sizes are used on purpose). Tests reuse these exact
# shapes: JAX compiles a weight initialiser per new weight shape, which dominates build time.
TINY = {
    "lenet": dict(input_shape=(28, 28, 1)),
    "lenet-modern": dict(input_shape=(28, 28, 1)),
    "alexnet": dict(input_shape=(65, 65, 1), hidden_units=32),
    "alexnet-imagenet": dict(input_shape=(67, 67, 3), hidden_units=32),
    "vgg11": dict(input_shape=(32, 32, 1), width_ratio=8, hidden_units=32),
    "vgg13": dict(input_shape=(32, 32, 1), width_ratio=8, hidden_units=32),
    "vgg16": dict(input_shape=(32, 32, 1), width_ratio=8, hidden_units=32),
    "vgg19": dict(input_shape=(32, 32, 1), width_ratio=8, hidden_units=32),
}


def shapes(model):
    return {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers[1:]}


def weight_shapes(model):
    return [(w.path, tuple(w.shape)) for w in model.weights]


def conv_params(cin, cout, k):
    return (k * k * cin + 1) * cout


def dense_params(n_in, n_out):
    return (n_in + 1) * n_out


def images(shape, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


# ------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("conv", ["builtin", "explicit"])
def test_lenet_feature_maps_and_params(conv):
    model = models.lenet(conv=conv)
    assert model.name == "lenet"
    assert shapes(model) == {
        "conv1": (28, 28, 6), "pool1": (14, 14, 6), "conv2": (10, 10, 16), "pool2": (5, 5, 16),
        "flatten": (400,), "fc1": (120,), "fc2": (84,), "logits": (10,),
    }
    expected = (conv_params(1, 6, 5) + conv_params(6, 16, 5) + dense_params(400, 120)
                + dense_params(120, 84) + dense_params(84, 10))
    assert expected == 61_706
    assert model.count_params() == 61_706
    assert not model.compiled


@pytest.mark.parametrize("modern, act, pool", [
    (False, "sigmoid", keras.layers.AveragePooling2D),
    (True, "relu", keras.layers.MaxPooling2D),
])
def test_lenet_activations_and_pooling(modern, act, pool):
    model = models.lenet(modern=modern)
    assert model.name == ("lenet-modern" if modern else "lenet")
    assert model.get_layer("conv1").activation is keras.activations.get(act)
    assert model.get_layer("fc2").activation is keras.activations.get(act)
    assert isinstance(model.get_layer("pool1"), pool)
    # Logits, not probabilities: the last layer has no activation.
    assert model.get_layer("logits").activation is keras.activations.linear


@pytest.mark.parametrize("conv", ["builtin", "explicit"])
def test_alexnet_d2l_shapes_and_params(conv):
    model = models.alexnet(conv=conv)
    got = shapes(model)
    got.pop("conv1_pad", None)  # the builtin variant pads conv1 with a ZeroPadding2D layer
    assert got == {
        "conv1": (54, 54, 96), "pool1": (26, 26, 96), "conv2": (26, 26, 256),
        "pool2": (12, 12, 256), "conv3": (12, 12, 384), "conv4": (12, 12, 384),
        "conv5": (12, 12, 256), "pool3": (5, 5, 256), "flatten": (6400,),
        "fc1": (4096,), "dropout1": (4096,), "fc2": (4096,), "dropout2": (4096,),
        "logits": (10,),
    }
    expected = (conv_params(1, 96, 11) + conv_params(96, 256, 5) + conv_params(256, 384, 3)
                + conv_params(384, 384, 3) + conv_params(384, 256, 3)
                + dense_params(6400, 4096) + dense_params(4096, 4096) + dense_params(4096, 10))
    assert model.count_params() == expected == 46_764_746
    # Five distinct conv layers (the seed's code reused conv4) and three dense layers.
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 5 and len({id(c) for c in convs}) == 5
    assert len([l for l in model.layers if isinstance(l, keras.layers.Dense)]) == 3


def test_alexnet_imagenet_layout():
    model = models.build("alexnet-imagenet")
    assert model.name == "alexnet-imagenet"
    assert tuple(model.inputs[0].shape[1:]) == (227, 227, 3)
    got = shapes(model)
    assert got["conv1"] == (55, 55, 96) and got["pool3"] == (6, 6, 256)
    assert got["flatten"] == (9216,) and got["logits"] == (1000,)
    expected = (conv_params(3, 96, 11) + conv_params(96, 256, 5) + conv_params(256, 384, 3)
                + conv_params(384, 384, 3) + conv_params(384, 256, 3)
                + dense_params(9216, 4096) + dense_params(4096, 4096) + dense_params(4096, 1000))
    assert model.count_params() == expected


def vgg_expected_params(arch, ratio, in_ch, side, classes=10, hidden=4096):
    total, cin = 0, in_ch
    for num_convs, channels in arch:
        for _ in range(num_convs):
            total += conv_params(cin, channels // ratio, 3)
            cin = channels // ratio
    flat = (side // 32) ** 2 * cin
    return total + dense_params(flat, hidden) + dense_params(hidden, hidden) + dense_params(
        hidden, classes)


@pytest.mark.parametrize("conv, side", [("builtin", 224), ("explicit", 224), ("builtin", 64)])
def test_vgg11_width4_shapes_and_params(conv, side):
    model = models.vgg(conv=conv, depth=11, input_shape=(side, side, 1), width_ratio=4)
    assert model.name == "vgg11"
    got = shapes(model)
    assert got["block1_conv1"] == (side, side, 16)
    assert got["block3_conv2"] == (side // 4, side // 4, 64)
    assert got["block5_pool"] == (side // 32, side // 32, 128)
    assert got["flatten"] == ((side // 32) ** 2 * 128,)  # 7x7x128 = 6,272 at 224
    assert got["fc1"] == (4096,) and got["logits"] == (10,)
    arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    assert model.count_params() == vgg_expected_params(arch, 4, 1, side)


@pytest.mark.parametrize("depth, convs", [(11, 8), (13, 10), (16, 13), (19, 16)])
def test_vgg_depths(depth, convs):
    model = models.build(f"vgg{depth}", **TINY[f"vgg{depth}"])
    assert model.name == f"vgg{depth}"
    assert len([l for l in model.layers if isinstance(l, keras.layers.Conv2D)]) == convs
    assert len([l for l in model.layers if isinstance(l, keras.layers.Dense)]) == 3
    assert model.count_params() == vgg_expected_params(
        models.VGG_ARCHS[depth], 8, 1, 32, hidden=32)


def test_vgg_custom_arch():
    model = models.vgg(arch=((1, 8), (1, 16)), input_shape=(8, 8, 1), hidden_units=4)
    assert model.name == "vgg"
    assert shapes(model)["flatten"] == (2 * 2 * 16,)


# ------------------------------------------------------------------------- builtin vs explicit
# vgg13/16/19 share vgg11's code path (only the block config differs), so they are left out here.
@pytest.mark.parametrize("name", ["lenet", "lenet-modern", "alexnet", "alexnet-imagenet", "vgg11"])
def test_builtin_and_explicit_variants_match(name):
    builtin = models.build(name, conv="builtin", **TINY[name])
    explicit = models.build(name, conv="explicit", **TINY[name])
    assert models.conv_kind(builtin) == "builtin"
    assert models.conv_kind(explicit) == "explicit"
    assert builtin.name == explicit.name == name
    assert builtin.count_params() == explicit.count_params()
    assert weight_shapes(builtin) == weight_shapes(explicit)
    # Same weights -> same outputs.
    converted = models.convert(builtin, conv="explicit")
    assert models.conv_kind(converted) == "explicit"
    assert weight_shapes(converted) == weight_shapes(explicit)
    explicit.set_weights(builtin.get_weights())
    x = images(TINY[name]["input_shape"], seed=1)
    want = keras.ops.convert_to_numpy(builtin(x, training=False))
    for other in (explicit, converted):
        got = keras.ops.convert_to_numpy(other(x, training=False))
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lenet", "alexnet", "vgg11"])
def test_convert_round_trip(name):
    explicit = models.build(name, conv="explicit", **TINY[name])
    builtin = models.convert(explicit, conv="builtin")
    back = models.convert(builtin, conv="explicit")
    assert models.conv_kind(builtin) == "builtin" and models.conv_kind(back) == "explicit"
    assert [l.name for l in back.layers] == [l.name for l in explicit.layers]
    assert [type(l) for l in back.layers] == [type(l) for l in explicit.layers]
    # Rebuilding from the other variant gives the builder's own layer list.
    fresh = models.build(name, conv="builtin", **TINY[name])
    assert [(l.name, type(l)) for l in builtin.layers] == [(l.name, type(l)) for l in fresh.layers]
    x = images(TINY[name]["input_shape"], seed=2)
    want = keras.ops.convert_to_numpy(explicit(x, training=False))
    for model in (builtin, back):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(x, training=False)), want, atol=1e-5, rtol=0)
    for a, b in zip(explicit.get_weights(), back.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_convert_keeps_weights_independent():
    model = models.lenet()
    copy = models.convert(model, conv="builtin")  # same implementation: a fresh copy
    copy.get_layer("conv1").kernel.assign(np.zeros((5, 5, 1, 6), "float32"))
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("conv1").kernel)).sum() > 0


def test_convert_rejects_bad_input():
    model = models.lenet()
    with pytest.raises(ValueError, match=r"conv.*'fast'"):
        models.convert(model, conv="fast")
    with pytest.raises(TypeError, match="keras.Model"):
        models.convert("lenet")
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, name="a")(inputs)
    b = keras.layers.Conv2D(2, 3, name="b")(inputs)
    branched = keras.Model(inputs, keras.layers.Add()([a, b]))
    with pytest.raises(ValueError, match="unbranched"):
        models.convert(branched, conv="explicit")


# ----------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name, conv", [
    ("lenet", "builtin"), ("lenet", "explicit"), ("alexnet", "builtin"),
    ("vgg11", "builtin"), ("vgg11", "explicit"),
])
def test_fit_decreases_loss(name, conv):
    """A few model.fit steps lower the loss and move the first conv layer's kernel.

    Deep unnormalised nets start with near-constant logits (loss ~ ln 3) and need many steps to
    separate random images, so the labels are skewed (8/3/1): the loss must then fall within a few
    steps, and the first kernel changing shows the gradient flows back through every layer.
    """
    keras.utils.set_random_seed(0)
    kw = dict(TINY[name])
    model = models.build(name, conv=conv, num_classes=3, **kw)
    x = images(kw["input_shape"], n=12, seed=3)
    y = np.array([0] * 8 + [1] * 3 + [2])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(3e-3), loss)

    def current_loss():  # eager, dropout off
        return float(keras.ops.convert_to_numpy(loss(y, model(x, training=False))))

    first_conv = next(l for l in model.layers if isinstance(l, keras.layers.Conv2D))
    kernel_before = keras.ops.convert_to_numpy(first_conv.kernel).copy()
    before = current_loss()
    model.fit(x, y, batch_size=12, epochs=4, verbose=0, shuffle=False)
    after = current_loss()
    assert np.isfinite(after) and after < before
    assert np.any(keras.ops.convert_to_numpy(first_conv.kernel) != kernel_before)


# -------------------------------------------------------------------------------- registry
def test_available_names():
    names = models.available()
    assert names == sorted(names)
    assert {"lenet", "lenet-modern", "alexnet", "alexnet-imagenet",
            "vgg11", "vgg13", "vgg16", "vgg19"} <= set(names)


def test_build_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        models.build("resnet50")
    message = str(info.value)
    assert "'resnet50'" in message
    for name in models.available():
        assert name in message


def test_build_rejects_fixed_arguments():
    with pytest.raises(ValueError, match="depth"):
        models.build("vgg11", depth=16)


def test_summary_is_reexported():
    assert models.summary is summary_fn


# ----------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("conv", ["Builtin", "torch", None, 1])
def test_bad_conv(conv):
    with pytest.raises(ValueError, match=r"conv must be one of 'builtin', 'explicit'"):
        models.lenet(conv=conv)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.5, True, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2.*" + repr(
            num_classes).replace(".", r"\.")):
        models.build("lenet", num_classes=num_classes)


@pytest.mark.parametrize("input_shape", [(28, 28), (1, 28, 28, 1), (28, 0, 1), "28,28,1",
                                         (28.0, 28, 1), None])
def test_bad_input_shape(input_shape):
    with pytest.raises(ValueError, match=r"input_shape must be 3 positive integers"):
        models.lenet(input_shape=input_shape)


@pytest.mark.parametrize("width_ratio", [0, -1, 1.5, 65, "4"])
def test_bad_width_ratio(width_ratio):
    with pytest.raises(ValueError, match=r"width_ratio must be a positive integer <= 64"):
        models.vgg(width_ratio=width_ratio, input_shape=(32, 32, 1))


def test_bad_depth_and_dropout():
    with pytest.raises(ValueError, match=r"depth must be one of \[11, 13, 16, 19\]"):
        models.vgg(depth=12)
    with pytest.raises(ValueError, match="dropout"):
        models.alexnet(dropout=1.0)


# Minimum sides walked by hand: LeNet 12 -> conv 12 -> pool 6 -> conv 2 -> pool 1;
# AlexNet (d2l) 65 -> conv1 (65+2-11)//4+1 = 15 -> pool 7 -> 7 -> pool 3 -> 3 -> pool 1;
# AlexNet-ImageNet 67 -> (67-11)//4+1 = 15 -> ... -> 1; VGG: five halvings, 32 -> 1.
@pytest.mark.parametrize("name, minimum", [
    ("lenet", 12), ("lenet-modern", 12), ("alexnet", 65), ("alexnet-imagenet", 67),
    ("vgg11", 32), ("vgg19", 32),
])
def test_input_too_small(name, minimum):
    assert models.min_input_size(name) == minimum
    kw = {k: v for k, v in TINY[name].items() if k != "input_shape"}
    channels = TINY[name]["input_shape"][2]
    models.build(name, input_shape=(minimum, minimum, channels), **kw)  # the minimum builds
    for shape in [(minimum - 1, minimum, channels), (minimum, minimum - 1, channels)]:
        with pytest.raises(ValueError) as info:
            models.build(name, input_shape=shape, **kw)
        message = str(info.value)
        assert f"at least {minimum}x{minimum}" in message
        assert str(shape) in message and "Resize" in message


def test_alexnet_on_mnist_size_says_resize():
    with pytest.raises(ValueError, match=r"alexnet needs inputs of at least 65x65.*Resiz"):
        models.alexnet(input_shape=(28, 28, 1))


def test_mixed_models_are_mixed_for_models_and_export():
    import keras

    from kcnn import layers
    from kcnn.export.onnx_export import detect_conv

    mixed = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(2, 3),
                              layers.CrossCorrelation2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert models.conv_kind(mixed) == detect_conv(mixed) == "mixed"
    assert models.conv_kind(plain) == detect_conv(plain) == "none"
