"""kcnn.data.folder + kcnn.data.stream: folders of images of any size and kind, streamed.

Real files written with Pillow: odd kinds (EXIF-rotated, 16-bit, palette, CMYK, alpha), mixed
sizes, two real photos (scikit-learn's sample images), a garbage file and a truncated JPEG.
"""
import io

import numpy as np
import pytest
from PIL import Image

from kcnn import data
from kcnn.data import DataError
from kcnn.data.stream import decode_file
from odd_images import write_odd_images

SIZE = (12, 10)


@pytest.fixture(scope="module")
def photos():
    from sklearn.datasets import load_sample_images

    return [img[::8, ::8] for img in load_sample_images().images]  # 54 x 80, still photos


def _write_tree(root, photos, rng):
    """cls_a: odd kinds; cls_b: random RGB of mixed sizes + the photos; labels by folder."""
    odd = root / "cls_a"
    odd.mkdir(parents=True)
    files = write_odd_images(odd)
    Image.fromarray(rng.integers(0, 256, (7, 9), dtype=np.uint8)).convert("P").save(odd / "p.gif")
    Image.fromarray(rng.integers(0, 256, (13, 5, 3), dtype=np.uint8)).save(odd / "b.bmp")
    other = root / "cls_b"
    other.mkdir()
    for i, (h, w) in enumerate([(9, 31), (40, 8), (16, 16), (25, 19)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(other / f"{i}.jpg")
    for i, photo in enumerate(photos):
        Image.fromarray(photo).save(other / f"photo{i}.jpg", quality=90)
    return files


def _collect(ds):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_any_size_and_kind_streams_at_the_model_size(tmp_path, photos, rng):
    odd = _write_tree(tmp_path, photos, rng)
    d = data.load(f"folder:{tmp_path}", seed=0, test_fraction=0.25)
    n = len(odd) + 2 + 4 + len(photos)
    assert d.num_train + d.num_test == n and d.num_test == int(n * 0.25)
    assert d.channels == 3 and d.class_names == ("cls_a", "cls_b") and not d.skipped_files
    assert len(set(d.train_files + d.test_files)) == n
    for split, count in (("train", d.num_train), ("test", d.num_test)):
        x, y = _collect(d.dataset(split, batch_size=4, image_size=SIZE))
        assert x.shape == (count, *SIZE, 3) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        files = d.train_files if split == "train" else d.test_files
        expected = [0 if "/cls_a/" in f else 1 for f in files]
        if split == "train":  # shuffled: the same labels in another order
            assert sorted(y.tolist()) == sorted(expected)
        else:
            assert y.tolist() == expected
    gray = _collect(d.dataset("test", batch_size=4, image_size=SIZE, channels=1))[0]
    assert gray.shape[-1] == 1


def test_decoding_matches_the_shared_decoder(tmp_path):
    for name, (path, expected) in write_odd_images(tmp_path).items():
        array = decode_file(str(path), 3)
        rgb = expected if expected.ndim == 3 else np.repeat(expected[..., None], 3, axis=-1)
        np.testing.assert_array_equal(array, rgb, err_msg=name)  # EXIF turned, 16 -> 8 bit...


def test_jpeg_draft_never_decodes_below_the_input_size(tmp_path, photos):
    path = tmp_path / "big.jpg"
    big = np.asarray(Image.fromarray(photos[0]).resize((640, 432)))
    Image.fromarray(big).save(path, quality=95)
    assert decode_file(str(path), 3, min_side=100).shape == (108, 160, 3)  # 1/4 scale
    assert decode_file(str(path), 3, min_side=200).shape == (216, 320, 3)  # 1/2 scale
    assert decode_file(str(path), 3, min_side=300).shape == (432, 640, 3)  # full size


def test_train_shuffles_per_epoch_from_the_seed(tmp_path, rng):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(np.full((5, 7), 20 * i + (c == "b"), np.uint8)).save(tmp_path / c / f"{i}.png")
    d = data.load(f"folder:{tmp_path}", test_fraction=0.2)
    for cache in (0, 1 << 20):  # streamed from disk every epoch, and cached in memory
        ds = d.dataset("train", batch_size=20, image_size=(5, 7), seed=3, cache_bytes=cache)
        first, second = (_collect(ds)[0][:, 0, 0, 0] for _ in range(2))
        again = _collect(d.dataset("train", batch_size=20, image_size=(5, 7), seed=3,
                                   cache_bytes=cache))[0][:, 0, 0, 0]
        assert sorted(first) == sorted(second) and not np.array_equal(first, second)
        np.testing.assert_array_equal(first, again)


def test_broken_files_are_skipped_named_and_counted(tmp_path, photos, rng, capfd):
    _write_tree(tmp_path, photos, rng)
    (tmp_path / "cls_a" / "garbage.png").write_bytes(b"these bytes are no image")
    buffer = io.BytesIO()
    Image.fromarray(photos[1]).save(buffer, format="JPEG", quality=95)
    (tmp_path / "cls_b" / "truncated.jpg").write_bytes(buffer.getvalue()[:2000])  # header intact
    d = data.load(f"folder:{tmp_path}", seed=0, test_fraction=0.25)
    assert d.skipped_files == [str(tmp_path / "cls_a" / "garbage.png")]  # header unreadable
    counted = d.num_train + d.num_test
    x = [_collect(d.dataset(s, batch_size=8, image_size=SIZE))[0] for s in ("train", "test")]
    assert len(x[0]) + len(x[1]) == counted - 1  # the truncated JPEG failed while decoding
    assert d.skipped_files == sorted(str(tmp_path / p) for p in
                                     ("cls_a/garbage.png", "cls_b/truncated.jpg"))
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("warning: skipped")]
    assert len(lines) == 2 and any("truncated.jpg: " in ln for ln in lines)


def test_validation_split_by_file(tmp_path, photos, rng):
    _write_tree(tmp_path, photos, rng)
    d = data.load(f"folder:{tmp_path}", seed=0, test_fraction=0.25)
    train, val = data.split_validation(d, 0.25, seed=1)
    assert train.num_train + val.num_test == d.num_train and train.test_files == d.test_files
    assert not set(train.train_files) & set(val.test_files)
    assert data.split_validation(d, 0.25, seed=1)[1].test_files == val.test_files


def test_bad_arguments_name_themselves(tmp_path, photos, rng):
    _write_tree(tmp_path, photos, rng)
    d = data.load(f"folder:{tmp_path}")
    for kwargs, message in [
        (dict(image_size=None), "image_size must be given for folder data"),
        (dict(image_size=8, resize="fill"), "resize must be one of stretch, crop, pad"),
        (dict(image_size=8, augment="blur"), "augment must be one of"),
        (dict(image_size=8, channels=2), "channels must be None, 1 or 3; received 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            d.dataset("train", batch_size=4, **kwargs)
    with pytest.raises(ValueError, match="augment applies to the training split only"):
        d.dataset("test", batch_size=4, image_size=8, augment="flip")
    with pytest.raises(DataError, match="class folder 'cls_c' holds no image files"):
        (tmp_path / "cls_c").mkdir()
        data.load(f"folder:{tmp_path}")
