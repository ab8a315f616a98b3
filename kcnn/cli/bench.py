"""``kcnn-bench``: measure kcnn against its references and write the figures as JSON.

Every figure is a ratio against a reference measured in the same run (explicit vs built-in conv,
kcnn vs plain PyTorch, onnxruntime vs Keras), after warm-up, median of ``--repeats`` repetitions.
Exit codes: 0 all sections ran, 1 a section failed (its error is in the JSON and the table),
2 bad usage, 130 interrupted (one line on stderr; see :mod:`kcnn.cli.base`).
"""
from __future__ import annotations

import argparse
import os
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, UsageError, entry_point

EPILOG = """\
sections:
  conv       CrossCorrelation2D vs Conv2D: train-step / forward time and peak RSS per backend
  user       the explicit layers in a plain script at Keras defaults: LeNet fit time, VGG-block
             peak RSS, VGG-11/4 step under mixed_bfloat16 vs float32
  torch      LeNet training throughput: kcnn's training path vs plain PyTorch (d2l style)
  inference  onnxruntime vs model.predict vs model(x): batch-1 latency, batch-256 throughput
  serving    kcnn-serve under 32 concurrent clients on loopback
  train      kcnn-train default run (digits): accuracy and wall time, explicit vs builtin
  data       folder:DIR pipeline (decode, resize, augment) images/s vs the AlexNet step's
             examples/s at 224 (target >= 2x), and peak RSS as the folder grows 4x
  gpu        model.fit (LeNet, VGG-11/4; builtin and explicit; float32 and mixed precision) and
             onnxruntime's CUDA provider on the backend's GPU; skipped, with the reason, without one

examples:
  kcnn-bench --section conv --size tiny            seconds, the configured backend only
  kcnn-bench --size full --out bench.json          everything, all three backends (long)
"""

SECTION_CHOICES = ("conv", "user", "torch", "inference", "serving", "train", "data", "gpu", "all")


def _backends(text):
    names = [t.strip() for t in text.split(",") if t.strip()]
    accepted = ("tensorflow", "jax", "torch")
    if text in ("all", "current"):
        return text
    bad = [n for n in names if n not in accepted]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected 'all', 'current' or a comma-separated list of {', '.join(accepted)}; "
            f"received {text!r}")
    return names


def build_parser():
    """The ``kcnn-bench`` argument parser."""
    p = Parser("kcnn-bench", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=SECTION_CHOICES, action="append",
                   help="section to run; repeat for several (default all)")
    p.add_argument("--size", choices=("tiny", "full"), default="tiny",
                   help="tiny: small shapes, seconds per section (smoke test); full: the issue's "
                        "shapes (default tiny)")
    p.add_argument("--out", help="write the results as JSON to this file (atomically)")
    p.add_argument("--repeats", type=argtypes.positive_int,
                   help="timed repetitions per figure, median reported (default 3 tiny, 7 full)")
    p.add_argument("--backends", type=_backends,
                   help="Keras backends for the per-backend sections: all, current (the "
                        "configured one) or a list such as tensorflow,torch (default: current "
                        "at tiny, all at full)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _check_out(path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"--out {path}: is a folder, expected a file name")


def run(args) -> int:
    """Run the sections, print the table, write the JSON; 1 if a section failed."""
    if args.out:
        _check_out(args.out)
    from kcnn import bench

    sections = args.section or ["all"]
    sections = list(bench.SECTIONS) if "all" in sections else list(dict.fromkeys(sections))
    backends = args.backends
    if backends == "all":
        backends = bench.BACKENDS
    elif backends == "current":
        backends = (bench.current_backend(),)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    results = bench.run(sections, size=args.size, repeats=args.repeats, backends=backends,
                        log=log)
    print(bench.format_table(results))
    if args.out:
        bench.write_results(args.out, results)
        print(f"results: {args.out}")
    failed = any("error" in s or s.get("errors") for s in results["sections"].values())
    return 1 if failed else 0


main = entry_point(build_parser, run)


if __name__ == "__main__":
    sys.exit(main())
