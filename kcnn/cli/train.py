"""``kcnn-train``: train a kcnn model with ``model.fit``, export it to ONNX, report.

With no arguments it trains LeNet (ReLU variant, Adam) on scikit-learn's bundled digits,
offline, and writes a run folder under ``runs/``. Exit codes (:mod:`kcnn.cli.base`): 0 done,
1 training or export failed, 2 bad usage or input, 130 interrupted (the message says how to
resume); each error is one line on stderr.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile

from kcnn.cli import argtypes
from kcnn.cli.base import CommandError, Parser, UsageError, entry_point

EPILOG = """\
examples:
  kcnn-train                                   LeNet on the bundled digits (about a minute)
  kcnn-train --dataset mnist --recipe d2l      d2l's LeNet recipe on MNIST
  kcnn-train --model vgg11 --dataset fashion_mnist --image-size 96 --epochs 5
  kcnn-train --model alexnet --dataset folder:photos   your photos, any size, streamed from disk
  kcnn-train --out runs/a --resume             continue a killed run from its last epoch

The run folder gets model.keras, model.onnx, history.csv, report.json, curves.png,
confusion.png, kernels.png and config.json (backup/ holds the checkpoint until the run ends).
"""


def _steps_per_execution(text):
    if text == "auto":
        return text
    try:
        return argtypes.positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a positive integer, received {text!r}") from None


def build_parser():
    """The ``kcnn-train`` argument parser."""
    p = Parser("kcnn-train", description=__doc__.split("\n\n")[0],
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet",
                   help="model to train: lenet, lenet-modern, alexnet, alexnet-imagenet, vgg11, "
                        "vgg13, vgg16, vgg19 (default lenet; the modern recipe builds "
                        "lenet-modern for it)")
    p.add_argument("--conv", choices=("builtin", "explicit"), default="builtin",
                   help="convolution layers: Keras Conv2D (builtin) or kcnn's explicit "
                        "CrossCorrelation2D (default builtin)")
    p.add_argument("--dataset", default="digits",
                   help="digits, mnist, fashion_mnist, cifar10, npz:PATH, idx:DIR, folder:DIR or "
                        "synthetic[:N[:HxW[xC]]] (default digits, bundled, no download)")
    p.add_argument("--recipe", choices=("d2l", "modern"), default="modern",
                   help="hyper-parameter preset: d2l (the book's SGD values, sigmoid LeNet) or "
                        "modern (Adam, cosine decay, ReLU; default)")
    p.add_argument("--epochs", type=argtypes.positive_int, help="epochs (default: the recipe's)")
    p.add_argument("--batch-size", type=argtypes.positive_int,
                   help="global batch size (default: the recipe's)")
    p.add_argument("--lr", type=argtypes.positive_float, help="learning rate (default: the recipe's)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"),
                   help="optimizer (default: the recipe's)")
    p.add_argument("--image-size", type=argtypes.positive_int,
                   help="square input side the images are resized to (default: the recipe's: "
                        "28 for LeNet, 224 for AlexNet and VGG)")
    p.add_argument("--seed", type=argtypes.non_negative_int, default=0,
                   help="random seed for weights, shuffling and splits; same seed on CPU, same "
                        "metrics (default 0)")
    p.add_argument("--out", help="run folder (default runs/<timestamp>); must be new or empty "
                                 "unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (default: the latest run under runs/) from "
                        "its last finished epoch, with its saved configuration")
    p.add_argument("--no-export", dest="export", action="store_false",
                   help="skip the ONNX export and onnxruntime check")
    p.add_argument("--mixed-precision", nargs="?", const="fp16", default="none",
                   choices=("none", "fp16", "bf16", "auto"), metavar="{none,fp16,bf16,auto}",
                   help="compute in float16 (fp16, also the bare flag), bfloat16 (bf16) or what "
                        "this machine does best (auto: bf16 on GPUs with compute capability >= 8 "
                        "and CPUs with AMX/AVX512-BF16, fp16 on other GPUs, else none); the "
                        "output layer and the ONNX export stay float32 (default: none)")
    p.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                   help="XLA / torch.compile for the train step (auto: what measured faster "
                        "here, kcnn.training.JIT_AUTO: XLA on jax, on tensorflow with a GPU or "
                        "with --conv explicit for jobs of 50,000+ examples (epochs x training "
                        "set); eager on torch, uncompiled graphs otherwise on a tensorflow CPU)")
    p.add_argument("--steps-per-execution", type=_steps_per_execution, default="auto",
                   help="batches per compiled call (fewer Python round trips); auto (default): "
                        "8, or 1 on torch and with a tensorflow --distribute")
    p.add_argument("--distribute", choices=("none", "mirrored", "multiworker"), default="none",
                   help="none; mirrored = all local GPUs (or 2 CPU replicas without a GPU) with "
                        "tf.distribute.MirroredStrategy (tensorflow) or keras.distribution."
                        "DataParallel (jax); multiworker = MultiWorkerMirroredStrategy over the "
                        "workers in TF_CONFIG (tensorflow)")
    p.add_argument("--early-stopping", type=argtypes.positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a lower loss on the set evaluated "
                        "after each epoch (the test set, or the --validation split) and keep "
                        "the best weights")
    p.add_argument("--validation", type=argtypes.open_fraction, metavar="FRACTION",
                   help="hold out FRACTION (0 < FRACTION < 1) of the training images, seeded and "
                        "stratified, and evaluate them after every epoch (val_loss, "
                        "val_accuracy) instead of the test set, which is then evaluated once, "
                        "at the end (default: the test set after every epoch, as d2l)")
    p.add_argument("--resize", choices=("stretch", "crop", "pad"),
                   help="how images of another aspect ratio meet the model's input: stretch, "
                        "crop (the largest centred box of the right aspect, then resize) or pad "
                        "(fit inside, black bars); default crop for folder:DIR, stretch otherwise")
    p.add_argument("--augment", choices=("none", "flip", "flip-crop", "flip-crop-color", "shift"),
                   help="augmentation of the training images with Keras preprocessing layers, "
                        "seeded by --seed (default: the recipe's: flip-crop for AlexNet and "
                        "VGG, none for LeNet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"--out {folder}: cannot write there ({e.strerror or e})") from None


def _latest_run(root="runs"):
    runs = [os.path.join(root, d) for d in sorted(os.listdir(root))] if os.path.isdir(root) else []
    runs = [r for r in runs if os.path.isfile(os.path.join(r, "config.json"))]
    if not runs:
        raise UsageError(f"--resume: no run to resume (no --out given and no run under {root}/)")
    return runs[-1]


def _out_dir(args):
    if args.resume:
        out = args.out or _latest_run()
        if not os.path.isfile(os.path.join(out, "config.json")):
            raise UsageError(f"--resume: no run to resume in {out} (config.json not found)")
        if os.path.isfile(os.path.join(out, "report.json")) and not os.path.isdir(
                os.path.join(out, "backup")):
            raise UsageError(f"--resume: the run in {out} already finished (report.json exists)")
        return out
    out = args.out or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f"))
    if os.path.isdir(out) and os.listdir(out):
        raise UsageError(f"--out {out}: folder is not empty (use --resume to continue a run)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a folder")
    return out


def _config(args, out):
    from kcnn.training import runs  # light: no backend imported yet

    if args.resume:
        try:
            config = runs.load_config(out)
        except runs.RunError as e:
            raise UsageError(str(e)) from None
    else:
        config = runs.RunConfig(
            out=out, model=args.model, conv=args.conv, dataset=args.dataset, recipe=args.recipe,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
            image_size=args.image_size, seed=args.seed, export=args.export,
            mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
            steps_per_execution=args.steps_per_execution, distribute=args.distribute,
            early_stopping=args.early_stopping, resize=args.resize, augment=args.augment,
            validation=args.validation)
    config.verbose = 0 if args.quiet else "auto"
    return config


def run(args) -> None:
    """Check the run folder, train (or resume), export, print the summary lines."""
    out = _out_dir(args)
    _check_writable(out)
    from kcnn.training import distribution, runs

    config = _config(args, out)
    try:  # device set-up must precede the backend's start
        distribution.prepare_distribution(config.distribute)
    except distribution.DistributionError as e:
        raise UsageError(str(e)) from None
    import tensorflow  # noqa: F401  (tf.data pipelines on every backend)

    from kcnn.training.callbacks import TrainingDiverged

    try:
        report = runs.execute(config, resume=args.resume)
    except (runs.RunError, distribution.DistributionError) as e:
        raise UsageError(str(e)) from None
    except TrainingDiverged as e:
        raise CommandError(str(e), code=1) from None
    except KeyboardInterrupt:
        raise CommandError(f"interrupted; continue with: kcnn-train --out {out} --resume",
                           code=130) from None
    if "summary_line" in report:
        print(report["summary_line"])
        onnx = report.get("onnx")
        if onnx:
            print(f"onnx: max abs diff {onnx['max_abs_diff']:.2e}, top-1 agreement "
                  f"{onnx['top1_agreement']:.3f}")
        print(f"run folder: {out}")


main = entry_point(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
