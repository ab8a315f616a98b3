"""``kcnn-bench --section data``: does the ``folder:DIR`` pipeline keep up with the training step?

* ``pipeline``: decoded, resized (``crop``), augmented (``flip-crop``) images per second of
  ``kcnn.data.folder_dataset`` over a folder of JPEG photos of mixed sizes (crops of
  scikit-learn's two sample photos, 640x427 at most), streamed from disk with no cache, one
  epoch after a warm-up epoch, median of the repeats. Peak RSS of the same child process.
* ``step``: the training step's examples per second, same backend: ``model.fit`` of the
  recipe's model (``full``: AlexNet, builtin conv, d2l recipe, at 224) on batches already in
  memory, the first (compiling) epoch left out.
* ``ratio`` = pipeline / step; the target is >= 2 (the input never starves the model).
* ``memory``: in the same child, the peak RSS after an epoch over a folder with ``4x`` as many
  files ÷ the peak after the ``1x`` epochs: about 1.0 when memory does not grow with the number
  of images (a peak can only grow, so any growth shows).

``tiny`` (tests) uses a few small photos and LeNet at 28; ``full`` takes about a minute per
backend on a 2-core machine.
"""
from __future__ import annotations

import os

from kcnn.bench import common as bench

TARGET = 2.0
SIZES = {
    "full": {"images": 128, "side": 640, "model": "alexnet", "image_size": 224, "batch": 32,
             "steps": 2},
    "tiny": {"images": 16, "side": 96, "model": "lenet", "image_size": 28, "batch": 8,
             "steps": 2},
}
MEMORY_FACTOR = 4


def write_photos(folder, count, side, seed=0):
    """``count`` JPEG crops (random size, up to ``side`` wide) of scikit-learn's sample photos
    in two class folders; returns the list of paths."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        scale = side / width
        w = int(rng.integers(width // 2, width + 1))
        h = int(rng.integers(height // 2, height + 1))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        image = Image.fromarray(photo[top:top + h, left:left + w])
        image = image.resize((max(8, int(w * scale)), max(8, int(h * scale))))
        path = os.path.join(folder, f"class{i % 2}", f"{i}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path, quality=90)
        paths.append(path)
    return paths


def _replicate(paths, folder, factor):
    """``factor`` links (or copies) of every file under ``folder``, same class folders."""
    import shutil

    for k in range(factor):
        for path in paths:
            target = os.path.join(folder, os.path.basename(os.path.dirname(path)),
                                  f"{k}-{os.path.basename(path)}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)


def _pipeline(folder, spec, repeats):
    """Images/s of one streamed epoch of ``folder`` (median of ``repeats`` after a warm-up)."""
    import time

    from kcnn import data

    ds = data.load(f"folder:{folder}", test_fraction=0.1).dataset(
        "train", batch_size=spec["batch"], image_size=spec["image_size"], channels=3,
        augment="flip-crop", cache_bytes=0)

    def epoch():
        return sum(int(x.shape[0]) for x, _ in ds)

    epoch()  # warm-up: tracing, thread pools
    rates, n = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        n = epoch()
        rates.append(n / (time.perf_counter() - start))
    return bench.median(rates), n


def _step(spec):
    """Examples/s of ``model.fit`` on in-memory batches at the model's input (compiled as
    ``kcnn.training.fit`` compiles), the first (compiling) epoch left out."""
    import keras
    import numpy as np

    from kcnn import models
    from kcnn import training as train

    side, batch, steps = spec["image_size"], spec["batch"], spec["steps"]
    channels = 3 if spec["model"] != "lenet" else 1
    recipe = train.get_recipe("d2l", spec["model"], batch_size=batch, image_size=side)
    keras.utils.set_random_seed(0)
    model = models.build(recipe.model, input_shape=(side, side, channels), num_classes=2,
                         **recipe.model_kwargs)
    train.compile_model(model, recipe, steps_per_epoch=steps)
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, side, side, channels), dtype=np.float32)
    y = rng.integers(0, 2, batch * steps)
    timer = train.Throughput()
    # At most two timed epochs: an AlexNet step at 224 takes seconds on a small CPU.
    model.fit(x, y, batch_size=batch, epochs=1 + min(spec["repeats"], 2), shuffle=False,
              verbose=0, callbacks=[timer])
    seconds = [timer.train_seconds[e] for e in sorted(timer.train_seconds)][1:]
    return bench.median([len(x) / s for s in seconds]), recipe.model


def child_measure(spec):
    """Pipeline images/s and peak RSS over the 1x folder, peak RSS after an epoch over the
    larger one (the peak can only grow: flat when streaming holds), then the step's examples/s."""
    rate, n = _pipeline(spec["folder"], spec, spec["repeats"])
    peak = bench.peak_rss_mib()
    _, n_many = _pipeline(spec["many"], spec, 1)
    peak_many = bench.peak_rss_mib()
    step, model = _step(spec)
    return {"images_per_s": rate, "images": n, "peak_rss_mib": peak, "images_many": n_many,
            "peak_rss_many_mib": peak_many, "examples_per_s": step, "model": model}


def run(ctx) -> dict:
    """Per backend, one child: pipeline images/s vs step examples/s; peak RSS over 1x vs 4x the
    files."""
    shape = SIZES[ctx.size]
    one = os.path.join(ctx.workdir, "photos")
    paths = write_photos(one, shape["images"], shape["side"])
    many = os.path.join(ctx.workdir, f"photos-x{MEMORY_FACTOR}")
    _replicate(paths, many, MEMORY_FACTOR)
    common = {"batch": shape["batch"], "image_size": shape["image_size"],
              "repeats": ctx.repeats}
    rows, memory, errors = [], [], []
    for backend in ctx.backends:
        ctx.say(f"[data] pipeline vs {shape['model']} step on {backend}")
        try:
            m = bench.run_child("data:measure", {**common, "folder": one, "many": many,
                                                 "model": shape["model"],
                                                 "steps": shape["steps"]},
                                backend=backend, timeout=ctx.timeout)
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        ratio = m["images_per_s"] / m["examples_per_s"]
        rows.append({"backend": backend, "model": m["model"],
                     "image_size": shape["image_size"], "batch": shape["batch"],
                     "pipeline_images_per_s": m["images_per_s"],
                     "step_examples_per_s": m["examples_per_s"], "ratio": ratio,
                     "target": TARGET, "met": ratio >= TARGET})
        memory.append({"backend": backend, "images": m["images"], "peak_mib": m["peak_rss_mib"],
                       "images_x": m["images_many"], "peak_x_mib": m["peak_rss_many_mib"],
                       "ratio": m["peak_rss_many_mib"] / m["peak_rss_mib"]})
    return {
        "rows": rows, "memory": memory, "errors": errors,
        "tables": [
            {"rows": "rows", "title": "folder pipeline (decode, crop-resize, flip-crop) vs "
                                      "training step (ratio: pipeline / step, target >= 2)",
             "columns": ["backend", "model", "image_size", "batch", "pipeline_images_per_s",
                         "step_examples_per_s", "ratio", "met"]},
            {"rows": "memory", "title": f"peak RSS of a streamed epoch: {MEMORY_FACTOR}x the "
                                        f"files / 1x (flat: about 1.0)",
             "columns": ["backend", "images", "peak_mib", "images_x", "peak_x_mib", "ratio"]},
        ],
    }
