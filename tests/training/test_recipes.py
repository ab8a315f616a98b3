"""kcnn.training.recipes: d2l / modern presets, overrides, validation, optimizers."""
import keras
import pytest

from kcnn.training import recipes


@pytest.mark.parametrize(
    "model, built, optimizer, lr, batch, epochs, size, kwargs",
    [
        ("lenet", "lenet", "sgd", 0.9, 256, 10, 28, {}),
        ("alexnet", "alexnet", "sgd", 0.01, 128, 10, 224, {}),
        ("vgg11", "vgg11", "sgd", 0.05, 128, 10, 224, {"width_ratio": 4}),
    ],
)
def test_d2l_presets_match_the_book(model, built, optimizer, lr, batch, epochs, size, kwargs):
    r = recipes.get("d2l", model)
    assert (r.name, r.model, r.optimizer, r.lr, r.batch_size, r.epochs, r.image_size) == (
        "d2l", built, optimizer, lr, batch, epochs, size)
    assert r.model_kwargs == kwargs and r.schedule == "constant" and r.momentum == 0


@pytest.mark.parametrize("model, built", [("lenet", "lenet-modern"), ("alexnet", "alexnet"),
                                          ("vgg16", "vgg16")])
def test_modern_presets_use_adam_and_relu_variant(model, built):
    r = recipes.get("modern", model)
    assert r.optimizer == "adam" and r.model == built and r.schedule == "cosine"


def test_explicit_variant_wins_over_recipe_variant():
    assert recipes.get("d2l", "lenet-modern").model == "lenet-modern"
    assert recipes.get("modern", "alexnet-imagenet").model == "alexnet-imagenet"


def test_overrides_apply_and_none_is_ignored():
    r = recipes.get("d2l", "lenet", lr=0.1, epochs=3, batch_size=None, optimizer="adamw")
    assert (r.lr, r.epochs, r.batch_size, r.optimizer) == (0.1, 3, 256, "adamw")
    assert r.to_dict()["lr"] == 0.1


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"recipe": "fast"}, "unknown recipe 'fast'"),
        ({"model": "resnet"}, "no recipe for model 'resnet'"),
        ({"lr": 0}, "lr must be a positive finite number; received lr=0"),
        ({"lr": float("nan")}, "lr must be"),
        ({"epochs": 1.5}, "epochs must be a positive integer; received epochs=1.5"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"optimizer": "lamb"}, "optimizer must be one of sgd, adam, adamw, rmsprop"),
        ({"momentum": 1.0}, "momentum must be"),
        ({"colour": 1}, "unknown recipe field(s) colour"),
    ],
)
def test_bad_values_name_the_argument(kwargs, fragment):
    args = {"recipe": kwargs.pop("recipe", "d2l"), "model": kwargs.pop("model", "lenet")}
    with pytest.raises(ValueError) as info:
        recipes.get(args["recipe"], args["model"], **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name, cls", [("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam),
                                       ("adamw", keras.optimizers.AdamW),
                                       ("rmsprop", keras.optimizers.RMSprop)])
def test_make_optimizer(name, cls):
    opt = recipes.make_optimizer(recipes.get("d2l", "lenet", optimizer=name))
    assert isinstance(opt, cls)
    assert float(keras.ops.convert_to_numpy(opt.learning_rate)) == pytest.approx(0.9)


def test_cosine_schedule_decays_over_all_steps():
    r = recipes.get("modern", "lenet", epochs=2, lr=0.01)
    with pytest.raises(ValueError, match="steps_per_epoch is required"):
        recipes.make_optimizer(r)
    schedule = recipes.make_optimizer(r, steps_per_epoch=5)._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 10
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(0.01)
    assert float(keras.ops.convert_to_numpy(schedule(10))) == pytest.approx(0.0, abs=1e-8)
