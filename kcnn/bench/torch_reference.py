"""``kcnn-bench --section torch``: LeNet training throughput, kcnn vs plain PyTorch.

The reference is d2l's LeNet written the way d2l writes it — ``nn.Sequential`` of ``Conv2d``,
``Sigmoid``, ``AvgPool2d`` and ``Linear``, Xavier initialisation, ``CrossEntropyLoss``, SGD at
lr 0.9, batches sliced from in-memory tensors (no ``DataLoader``), loss and accuracy accumulated
per batch as ``train_ch6`` does — run eagerly in its own process.

kcnn's side is ``kcnn.train.fit`` with the ``d2l`` LeNet recipe (SGD, lr 0.9, batch 256) — the
path ``kcnn-train --recipe d2l`` takes — on the same synthetic 28x28 images, in one process per
Keras backend. Its examples/second come from ``fit``'s own report (training only, first epoch
left out). At ``full`` size a few variants of the Keras path are timed on TensorFlow too, to show
where the time goes: ``jit_compile`` off/on, ``steps_per_execution=1`` (kcnn's default is 8),
and in-memory NumPy arrays instead of the ``tf.data`` pipeline. Every backend also runs
``plain_keras``: the same LeNet as a plain Keras script writes it (``model.compile`` at Keras's
defaults with SGD lr 0.9, ``model.fit`` on NumPy arrays, batch 256); the default row's
``vs_plain_keras`` is kcnn's examples/s over it (target >= 1.0, >= 1.2 on TensorFlow).

Both sides run the same number of epochs; the first is warm-up. The reference runs before and
after the Keras children and the mean of its two figures is the denominator of every ratio.
"""
from __future__ import annotations

import time

from kcnn.bench import common as bench

TARGET = 1.0
PLAIN_KERAS_TARGET = {"tensorflow": 1.2, "jax": 1.0, "torch": 1.0}  # kcnn.train.fit / plain Keras
SIZES = {"full": {"examples": 12800, "epochs": 4}, "tiny": {"examples": 1024, "epochs": 2}}
BATCH = 256
# (name, fit keyword arguments); "numpy" feeds model.fit in-memory arrays instead of tf.data.
VARIANTS = {
    "default": {},
    "jit_on": {"jit_compile": True},
    "jit_off": {"jit_compile": False},
    "steps_per_execution_1": {"steps_per_execution": 1},
    "numpy_input": {"numpy": True},
    "plain_keras": {"numpy": True, "plain": True},
}


def _images(examples, seed=0):
    from kcnn import data

    return data.synthetic(examples, image_shape=(28, 28, 1), seed=seed, test_fraction=0.05)


# ----------------------------------------------------------------------------------- children
def child_reference(spec):
    """Plain PyTorch eager LeNet (d2l): examples/second over the epochs after the first."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    images = _images(spec["examples"])
    x = torch.tensor(images.x_train, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    y = torch.tensor(images.y_train, dtype=torch.int64)
    net = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))

    def init_weights(m):
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.9)
    loss = nn.CrossEntropyLoss()
    n = len(y)
    seconds = []
    for _ in range(spec["epochs"]):
        net.train()
        order = torch.randperm(n)
        total_loss = correct = 0.0
        start = time.perf_counter()
        for i in range(0, n, BATCH):
            index = order[i:i + BATCH]
            xb, yb = x[index], y[index]
            optimizer.zero_grad()
            y_hat = net(xb)
            l = loss(y_hat, yb)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                total_loss += float(l) * xb.shape[0]
                correct += float((y_hat.argmax(dim=1) == yb).sum())
        seconds.append(time.perf_counter() - start)
    timed = seconds[1:] or seconds
    return {"examples_per_second": n * len(timed) / sum(timed), "epoch_seconds": seconds,
            "train_accuracy": correct / n, "threads": torch.get_num_threads(),
            "num_train": n}


def child_keras(spec):
    """kcnn.train.fit (d2l LeNet recipe) throughput for each requested variant."""
    import keras

    from kcnn import models
    from kcnn import training as train

    images = _images(spec["examples"])
    recipe = train.get_recipe("d2l", "lenet", epochs=spec["epochs"], batch_size=BATCH)
    out = {}
    for name in spec["variants"]:
        options = dict(VARIANTS[name])
        keras.utils.set_random_seed(0)
        model = models.build("lenet", input_shape=(28, 28, 1), num_classes=10)
        if options.pop("numpy", False):
            out[name] = _fit_numpy(model, images, recipe, plain=options.pop("plain", False))
        else:
            result = train.fit(model, images, recipe, verbose=0, **options)
            out[name] = {"examples_per_second": result.metrics["train_examples_per_second"],
                         "train_accuracy": result.metrics["train_accuracy"],
                         "epoch_seconds": [row["seconds"] for row in result.history]}
    return {"variants": out, "backend": keras.backend.backend()}


def _fit_numpy(model, images, recipe, *, plain=False):
    """model.fit on float32 arrays in memory (no tf.data), compiled as kcnn.train.fit does or,
    with ``plain``, at Keras's defaults as a user's own script does."""
    import math

    import keras

    from kcnn import training as train

    x = images.x_train.astype("float32") / 255.0
    steps = math.ceil(len(x) / recipe.batch_size)
    if plain:
        model.compile(optimizer=keras.optimizers.SGD(recipe.lr),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    else:
        train.compile_model(model, recipe, steps_per_epoch=steps)
    timer = train.Throughput()
    history = model.fit(x, images.y_train, batch_size=recipe.batch_size, epochs=recipe.epochs,
                        shuffle=True, verbose=0, callbacks=[timer])
    seconds = [timer.train_seconds[e] for e in sorted(timer.train_seconds)]
    timed = seconds[1:] or seconds
    return {"examples_per_second": len(x) * len(timed) / sum(timed),
            "train_accuracy": float(history.history["accuracy"][-1]), "epoch_seconds": seconds}


# ----------------------------------------------------------------------------------- section
def run(ctx) -> dict:
    """Reference, kcnn per backend (and variants at full size), reference again."""
    shape = dict(SIZES[ctx.size])
    ctx.say("[torch] plain PyTorch reference")
    references = [bench.run_child("torch_reference:reference", shape, backend="torch",
                                  timeout=ctx.timeout)]
    rows, errors = [], []
    for backend in ctx.backends:
        # The variants explain where the time goes; they are timed on Keras's default backend
        # only (torch.compile alone takes minutes on the torch backend).
        variants = (["default", "plain_keras"] if ctx.tiny or backend != "tensorflow"
                    else list(VARIANTS))
        ctx.say(f"[torch] kcnn.train.fit on {backend}")
        try:
            got = bench.run_child("torch_reference:keras", {**shape, "variants": variants},
                                  backend=backend, timeout=ctx.timeout)
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        for name, figures in got["variants"].items():
            rows.append({"backend": backend, "variant": name, **figures})
        plain = got["variants"].get("plain_keras")
        if plain and "default" in got["variants"]:
            kcnn_row = next(r for r in rows if r["backend"] == backend and r["variant"] == "default")
            kcnn_row["vs_plain_keras"] = kcnn_row["examples_per_second"] / plain["examples_per_second"]
            kcnn_row["plain_keras_target"] = PLAIN_KERAS_TARGET[backend]
    if not ctx.tiny:
        ctx.say("[torch] plain PyTorch reference again")
        references.append(bench.run_child("torch_reference:reference", shape, backend="torch",
                                          timeout=ctx.timeout))
    reference = sum(r["examples_per_second"] for r in references) / len(references)
    for row in rows:
        row["torch_examples_per_second"] = reference
        row["ratio"] = row["examples_per_second"] / reference
        row["target"] = TARGET if row["variant"] == "default" else None
        row["meets_target"] = row["ratio"] >= TARGET if row["target"] else None
    return {
        "reference": {"examples_per_second": reference, "runs": references,
                      "description": "d2l LeNet, nn.Sequential, SGD lr 0.9, batch 256, eager"},
        "rows": rows,
        "examples": shape["examples"],
        "epochs": shape["epochs"],
        "batch_size": BATCH,
        "errors": errors,
        "tables": [{"rows": "rows",
                    "title": "LeNet training examples/s, kcnn.train.fit / plain PyTorch",
                    "columns": ["backend", "variant", "examples_per_second",
                                "torch_examples_per_second", "ratio", "target",
                                "meets_target", "vs_plain_keras", "plain_keras_target"]}],
    }
