"""kcnn-train as a subprocess: bad usage, every data-set kind end to end, resume after SIGKILL,
NaN, distribution (mirrored, multiworker) and the default command's accuracy."""
import gzip
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()
SUMMARY = re.compile(r"loss \d+\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}, "
                     r"\d+\.\d examples/sec on \S.*")
TINY = ["--epochs", "1", "--batch-size", "32", "--image-size", "16", "--quiet"]


def _command():
    script = os.path.join(os.path.dirname(sys.executable), "kcnn-train")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "kcnn.cli.train"]


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=BACKEND)
    env.update(extra)
    return env


def run(args, *, cwd=None, env=None, timeout=300):
    return subprocess.run(_command() + list(args), cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, code, fragment):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kcnn-train: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_help_documents_every_option():
    proc = run(["--help"])
    assert proc.returncode == 0
    for option in ("--model", "--conv", "--dataset", "--recipe", "--epochs", "--batch-size",
                   "--lr", "--optimizer", "--seed", "--out", "--resume", "--no-export",
                   "--mixed-precision", "--jit-compile", "--distribute", "--image-size",
                   "--early-stopping", "--steps-per-execution", "--resize", "--augment",
                   "--validation"):
        assert option in proc.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer, received '0'"),
        (["--lr", "-1"], "--lr: expected a positive finite number, received '-1'"),
        (["--batch-size", "x"], "--batch-size: expected a positive integer, received 'x'"),
        (["--seed", "-3"], "--seed: expected a non-negative integer"),
        (["--steps-per-execution", "0"],
         "--steps-per-execution: expected 'auto' or a positive integer, received '0'"),
        (["--recipe", "fast"], "--recipe: invalid choice: 'fast'"),
        (["--conv", "fft"], "--conv: invalid choice"),
        (["--distribute", "ring"], "--distribute: invalid choice"),
        (["--augment", "mixup"], "--augment: invalid choice: 'mixup'"),
        (["--validation", "1"], "--validation: expected a number between 0 and 1, both excluded"),
        (["--colour"], "unrecognized arguments: --colour"),
        (["--resume"], "--resume: no run to resume"),
        (["--resume", "--out", "nowhere"], "--resume: no run to resume in nowhere"),
        (["--out", "full"], "--out full: folder is not empty"),
        (["--out", "afile/run"], "--out afile/run: cannot write there"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tmp_path, args, fragment):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "afile").write_text("not a folder")
    assert_one_line_error(run(args, cwd=tmp_path), 2, fragment)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "resnet"], "unknown model 'resnet'; available: alexnet"),
        (["--dataset", "imagenet"], "unknown data set spec 'imagenet'"),
        (["--dataset", "npz:missing.npz"], "missing.npz"),
    ],
)
def test_bad_names_exit_2_with_one_line(tmp_path, args, fragment):
    assert_one_line_error(run(args + ["--out", "r"], cwd=tmp_path), 2, fragment)


def test_distribution_on_torch_is_refused(tmp_path):
    proc = run(["--distribute", "mirrored", "--out", "r"], cwd=tmp_path,
               env=_env(KERAS_BACKEND="torch"))
    assert_one_line_error(proc, 2, "not supported on the torch backend")


def test_steps_per_execution_on_torch_is_refused(tmp_path):
    proc = run(["--steps-per-execution", "4", "--out", "r"], cwd=tmp_path,
               env=_env(KERAS_BACKEND="torch"))
    assert_one_line_error(proc, 2, "steps_per_execution must be 1 or 'auto' with the torch backend")


def test_nan_loss_exits_1_with_one_line(tmp_path):
    proc = run(["--dataset", "synthetic:200:16x16", "--optimizer", "sgd", "--lr", "1e30",
                "--out", "r", *TINY], cwd=tmp_path)
    assert_one_line_error(proc, 1, "training diverged: loss became")


# ------------------------------------------------------------------------- data-set kinds
def _arrays(rng, n_train=48, n_test=16, shape=(16, 16)):
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % 4,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % 4,
    }


def _write_idx(folder, a, gz):
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    suffix = ".gz" if gz else ""
    for prefix, split in (("train", "train"), ("t10k", "test")):
        x, y = a[f"x_{split}"], a[f"y_{split}"].astype(np.uint8)
        with opener(folder / f"{prefix}-images-idx3-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">IIII", 2051, *x.shape) + x.tobytes())
        with opener(folder / f"{prefix}-labels-idx1-ubyte{suffix}", "wb") as f:
            f.write(struct.pack(">II", 2049, len(y)) + y.tobytes())


def _prepare(kind, tmp_path, rng):
    """Write a tiny data set of ``kind``; return (--dataset spec, extra env, classes)."""
    if kind == "npz":
        np.savez(tmp_path / "tiny.npz", **_arrays(rng))
        return f"npz:{tmp_path / 'tiny.npz'}", {}, 4
    if kind == "idx":
        _write_idx(tmp_path / "idx", _arrays(rng), gz=False)
        return f"idx:{tmp_path / 'idx'}", {}, 4
    if kind == "folder":  # photos come in every size and format; one file is broken
        from PIL import Image

        for split in ("train", "test"):
            for label in ("cat", "dog"):
                (tmp_path / "imgs" / split / label).mkdir(parents=True)
                for i in range(6 if split == "train" else 2):
                    height, width = rng.integers(12, 40, 2)
                    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                    ext = (".png", ".jpg", ".gif", ".bmp")[i % 4]
                    Image.fromarray(pixels).save(tmp_path / "imgs" / split / label / f"{i}{ext}")
        (tmp_path / "imgs" / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
        return f"folder:{tmp_path / 'imgs'}", {}, 2
    if kind == "fashion_mnist":  # the real keras.datasets loader, reading a prepared cache
        a = _arrays(rng, 40, 10, (28, 28))
        a["y_train"], a["y_test"] = np.arange(40) % 10, np.arange(10) % 10
        _write_idx(tmp_path / "home" / "datasets" / "fashion-mnist", a, gz=True)
        return "fashion_mnist", {"KERAS_HOME": str(tmp_path / "home")}, 10
    if kind == "digits":
        return "digits", {}, 10
    return "synthetic:120:16x16", {}, 10


@pytest.mark.parametrize("kind", ["synthetic", "npz", "idx", "folder", "fashion_mnist", "digits"])
def test_end_to_end_per_dataset_kind(kind, tmp_path, rng):
    spec, env, classes = _prepare(kind, tmp_path, rng)
    export = kind in ("synthetic", "folder")  # one gray, one RGB export keep the suite short
    args = ["--dataset", spec, "--out", "run", "--epochs", "1", "--batch-size", "32",
            "--image-size", "16"] + ([] if export else ["--no-export"])
    validated = kind == "npz"  # a held-out validation split instead of the test set each epoch
    if validated:
        args += ["--validation", "0.25"]
    proc = run(args, cwd=tmp_path, env=_env(**env))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "step - accuracy: " in proc.stdout and "val_accuracy: " in proc.stdout  # progress bar
    summary = [line for line in proc.stdout.splitlines() if SUMMARY.fullmatch(line)]
    assert len(summary) == 1, proc.stdout
    out = tmp_path / "run"
    expected = {"model.keras", "history.csv", "report.json", "report.html", "config.json",
                "curves.png", "confusion.png", "kernels.png"} | (
                    {"model.onnx", "model.explain.onnx"} if export else set())
    assert expected <= set(os.listdir(out))
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "src=\"http" not in page
    assert "conv1 (" in page  # the layer table
    assert not (out / "backup").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == BACKEND and report["device"] == "cpu"
    assert report["model"] == "lenet-modern" and report["conv"] == "builtin"
    assert report["recipe"]["name"] == "modern" and report["recipe"]["image_size"] == 16
    assert report["dataset"].startswith(spec.split(":")[0])
    assert len(report["class_names"]) == classes
    assert 0 <= report["test_accuracy"] <= 1 and 0 <= report["train_accuracy"] <= 1
    assert report["test_loss"] > 0 and report["train_loss"] > 0
    assert report["train_examples_per_second"] > 0 and report["seconds"] > 0
    assert f"{report['test_accuracy']:.3f}" in summary[0]
    history = (out / "history.csv").read_text().splitlines()
    evaluated = "val" if validated else "test"
    assert history[0].startswith(f"epoch,loss,accuracy,{evaluated}_loss,{evaluated}_accuracy")
    assert len(history) == 2
    if validated:
        assert "test_loss" not in history[0] and 0 <= report["val_accuracy"] <= 1
        assert report["num_validation"] == 12 and report["num_train"] == 36
        assert json.loads((out / "config.json").read_text())["validation"] == 0.25
    if export:
        assert report["onnx"]["max_abs_diff"] < 1e-3 and report["onnx"]["top1_agreement"] == 1.0
        import onnxruntime as ort

        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        channels = 3 if kind == "folder" else 1
        logits = session.run(None, {"images": np.zeros((2, 16, 16, channels), np.float32)})[0]
        assert logits.shape == (2, classes)
    else:
        assert "onnx" not in report
    assert report["data"]["augment"] == "none"  # LeNet's recipes do not augment
    if kind == "folder":
        broken = str(tmp_path / "imgs" / "train" / "cat" / "broken.jpg")
        assert report["data"]["resize"] == "crop"  # photos keep their aspect ratio
        if export:  # and the served model fits other-sized photos the same way
            from kcnn.export import read_metadata

            assert read_metadata(out / "model.onnx")["kcnn.preprocessing"]["fit"] == "crop"
        assert report["data"]["skipped_files"] == [broken] and report["data"]["skipped"] == 1
        warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: skipped")]
        assert len(warned) == 1 and broken in warned[0]
        assert report["num_train"] == 12 and report["num_test"] == 4


def _photo_folder(root, per_class=60, seed=0):
    """Crops of scikit-learn's two sample photos (china, flower) as a class-per-folder tree:
    every crop a different size and aspect, saved as JPEG, PNG, BMP or GIF, every fifth gray."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(60, 200, 2)
            top, left = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
            image = Image.fromarray(photo[top:top + h, left:left + w])
            image = image.convert("L") if i % 5 == 1 else image
            image.save(root / name / f"{i}.{('jpg', 'png', 'bmp', 'gif')[i % 4]}")
    return root


@pytest.mark.slow
def test_lenet_learns_a_folder_of_varied_photos(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    proc = run(["--dataset", f"folder:{folder}", "--epochs", "10", "--batch-size", "16",
                "--no-export", "--quiet", "--out", "run"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["num_train"] + report["num_test"] == 120 and report["data"]["skipped"] == 0
    assert report["data"]["resize"] == "crop"
    assert report["test_accuracy"] >= 0.8, report["test_accuracy"]


def test_explicit_conv_with_the_d2l_recipe(tmp_path):
    proc = run(["--dataset", "synthetic:120:16x16", "--conv", "explicit", "--recipe", "d2l",
                "--out", "run", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["conv"] == "explicit" and report["model"] == "lenet"
    assert report["recipe"]["optimizer"] == "sgd" and report["recipe"]["lr"] == 0.9
    assert report["onnx"]["top1_agreement"] == 1.0


@pytest.mark.parametrize("flag, policy, named", [
    (["--mixed-precision"], "mixed_float16", "fp16"),  # the bare flag keeps meaning fp16
    (["--mixed-precision", "bf16"], "mixed_bfloat16", "bf16"),
    (["--mixed-precision", "auto"], None, "auto"),
])
def test_mixed_precision_keeps_a_float32_export(tmp_path, flag, policy, named):
    from kcnn.training import precision

    policy = policy or precision.resolve_policy("auto", BACKEND)
    proc = run(["--dataset", "synthetic:120:16x16", *flag, "--out", "run", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["dtype_policy"] == policy and report["mixed_precision"] == named
    assert report["onnx"]["max_abs_diff"] < 1e-3 and report["onnx"]["top1_agreement"] == 1.0


# ------------------------------------------------------------------------- resume
def test_resume_after_sigkill_completes_every_epoch_once(tmp_path):
    epochs = 4
    args = ["--dataset", "synthetic:800:28x28", "--epochs", str(epochs), "--batch-size", "16",
            "--jit-compile", "off", "--no-export", "--quiet", "--out", "run"]
    proc = subprocess.Popen(_command() + args, cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = tmp_path / "run" / "backup" / "training_metadata.json"
    try:
        deadline = time.monotonic() + 240
        while not metadata.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metadata.exists(), "the first epoch's checkpoint never appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "report.json").exists()
    done_before = json.loads(metadata.read_text())["epoch"]
    assert 1 <= done_before < epochs

    resumed = run(["--resume", "--out", "run", "--quiet"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["epochs"] == epochs
    assert report["epochs_this_run"] == epochs - done_before
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, epochs + 1))
    again = run(["--resume", "--out", "run"], cwd=tmp_path)
    assert_one_line_error(again, 2, "already finished")


def test_resume_of_a_copied_run_folder_writes_only_into_the_copy(tmp_path):
    import shutil

    proc = run(["--dataset", "synthetic:120:16x16", "--no-export", "--out", "orig"] + TINY,
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    (tmp_path / "copy" / "report.json").unlink()  # as if the copy were of an unfinished run
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "orig").iterdir()}
    resumed = run(["--resume", "--out", "copy", "--quiet"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "copy" / "report.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "orig").iterdir()} == before


@pytest.mark.parametrize("config", ['{"a": 1}', "[1, 2]", "not json", '{"model": 3, "dataset": "digits", "conv": "builtin"}'])
def test_resume_of_a_foreign_folder_is_one_line(tmp_path, config):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(config)
    assert_one_line_error(run(["--resume", "--out", "other"], cwd=tmp_path), 2, "cannot resume from")


# ------------------------------------------------------------------------- distribution
@pytest.mark.skipif(BACKEND == "torch", reason="no mirrored distribution on torch (refusal tested)")
def test_mirrored_on_two_cpu_replicas(tmp_path):
    proc = run(["--dataset", "synthetic:120:16x16", "--distribute", "mirrored", "--no-export",
                "--out", "run", *TINY], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["distribute"] == "mirrored" and report["replicas"] == 2
    assert report["device"] == "2x cpu"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="MultiWorkerMirroredStrategy (TF_CONFIG) exists on the tensorflow "
                           "backend only")
def test_multiworker_with_two_local_workers(tmp_path):
    # model.fit under MultiWorkerMirroredStrategy needs kcnn.distribute_compat (keras#20585).
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            _command() + ["--dataset", "synthetic:128:16x16", "--distribute", "multiworker",
                          "--no-export", "--out", f"worker{index}", *TINY],
            cwd=tmp_path, env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    try:  # a worker that fails leaves the other waiting in a collective op: never leak it
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    report = json.loads((tmp_path / "worker0" / "report.json").read_text())
    assert report["distribute"] == "multiworker" and report["replicas"] == 2
    assert report["device"] == "2x cpu" and report["epochs"] == 1
    assert SUMMARY.fullmatch(outputs[0][0].splitlines()[0])
    # The chief's outputs include the confusion matrix, predicted after worker 1 has finished.
    for name in ("model.keras", "history.csv", "curves.png", "confusion.png", "kernels.png"):
        assert (tmp_path / "worker0" / name).is_file(), name
    # Worker 1 trains in lockstep (same global metrics) but leaves the outputs to the chief.
    histories = [(tmp_path / f"worker{i}" / "history.csv").read_text().splitlines()
                 for i in range(2)]
    assert [h[1].split(",")[:5] for h in histories] == [histories[0][1].split(",")[:5]] * 2
    assert sorted(os.listdir(tmp_path / "worker1")) == ["config.json", "history.csv"]


# ------------------------------------------------------------------------- the default command
@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow",
                    reason="the default command's accuracy run is checked once, on the "
                           "tensorflow backend, to save CI time")
def test_default_command_reaches_97_percent_on_digits(tmp_path):
    proc = run([], cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    runs = os.listdir(tmp_path / "runs")
    assert len(runs) == 1
    report = json.loads((tmp_path / "runs" / runs[0] / "report.json").read_text())
    assert report["dataset"] == "digits" and report["model"] == "lenet-modern"
    assert report["test_accuracy"] >= 0.97
    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["onnx"]["top1_agreement"] == 1.0
    last = proc.stdout.strip().splitlines()
    assert any(SUMMARY.fullmatch(line) and line.endswith("on cpu") for line in last)
