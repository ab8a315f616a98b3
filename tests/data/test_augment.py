"""kcnn.data.augment: presets of Keras preprocessing layers, seeded, training batches only."""
import numpy as np
import pytest

from kcnn import data
from kcnn.training import recipes


def _batches(augment, seed, x):
    ds = data.make_dataset(x, np.arange(len(x)) % 2, batch_size=4, augment=augment, seed=seed)
    return np.concatenate([np.asarray(b) for b, _ in ds])


@pytest.mark.parametrize("preset", ["flip-crop-color", "shift"])  # between them: every layer
def test_presets_change_images_reproducibly_from_the_seed(rng, preset):
    x = rng.integers(0, 256, (8, 12, 12, 3), dtype=np.uint8)
    plain = _batches(None, 0, x)
    first, again, other = _batches(preset, 3, x), _batches(preset, 3, x), _batches(preset, 4, x)
    assert first.shape == plain.shape and first.dtype == np.float32
    assert not np.allclose(first, plain)
    np.testing.assert_array_equal(first, again)  # same seed, same augmented batches (CPU)
    assert not np.allclose(first, other)
    assert 0.0 <= first.min() and first.max() <= 1.0 + 1e-6


def test_flip_mirrors_whole_images(rng):
    x = rng.integers(0, 256, (16, 6, 6, 1), dtype=np.uint8)
    plain, flipped = _batches(None, 0, x), _batches("flip", 1, x)
    mirrored = [np.allclose(f, p[:, ::-1]) and not np.allclose(f, p)
                for f, p in zip(flipped, plain)]
    unchanged = [np.allclose(f, p) for f, p in zip(flipped, plain)]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and any(mirrored) and any(unchanged)


def test_none_gives_no_pipeline_and_bad_names_are_refused():
    assert data.augmentation("none") is None
    with pytest.raises(ValueError, match="augment must be one of none, flip, flip-crop"):
        data.augmentation("mixup")


def test_recipes_augment_imagenet_models_not_lenet():
    for recipe in recipes.RECIPES:
        assert recipes.get(recipe, "lenet").augment == "none"
        assert recipes.get(recipe, "alexnet").augment == "flip-crop"
        assert recipes.get(recipe, "vgg11").augment == "flip-crop"
    assert recipes.get("d2l", "alexnet", augment="none").augment == "none"
    with pytest.raises(ValueError, match="augment must be one of"):
        recipes.get("d2l", "lenet", augment="rotate")
