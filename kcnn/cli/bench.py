"""``kcnn-bench``: measure kcnn against its references and write the figures as JSON.

Every figure is a ratio against a reference measured in the same run (explicit vs built-in conv,
kcnn vs plain PyTorch, onnxruntime vs Keras), after warm-up, median of ``--repeats`` repetitions.
Exit codes: 0 all sections ran, 1 a section failed (its error is in the JSON and the table),
2 bad usage (one line on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys

from kcnn import argtypes

EPILOG = """\
sections:
  conv       CrossCorrelation2D vs Conv2D: train-step / forward time and peak RSS per backend
  torch      LeNet training throughput: kcnn's training path vs plain PyTorch (d2l style)
  inference  onnxruntime vs model.predict vs model(x): batch-1 latency, batch-256 throughput
  serving    kcnn-serve under 32 concurrent clients on loopback
  train      kcnn-train default run (digits): accuracy and wall time, explicit vs builtin

examples:
  kcnn-bench --section conv --size tiny            seconds, the configured backend only
  kcnn-bench --size full --out bench.json          everything, all three backends (long)
"""

SECTION_CHOICES = ("conv", "torch", "inference", "serving", "train", "all")


class UsageError(Exception):
    """Bad command line: exit 2 with one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


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
    p = _Parser(prog="kcnn-bench", description=__doc__.split("\n\n")[0], epilog=EPILOG,
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


def main(argv=None):
    """Console entry point; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.out:
            folder = os.path.dirname(os.path.abspath(args.out))
            if not os.path.isdir(folder):
                raise UsageError(f"--out {args.out}: folder {folder} does not exist")
            if os.path.isdir(args.out):
                raise UsageError(f"--out {args.out}: is a folder, expected a file name")
    except UsageError as e:
        print(f"kcnn-bench: error: {e}", file=sys.stderr)
        return 2

    from kcnn import bench

    sections = args.section or ["all"]
    sections = list(bench.SECTIONS) if "all" in sections else list(dict.fromkeys(sections))
    backends = args.backends
    if backends == "all":
        backends = bench.BACKENDS
    elif backends == "current":
        backends = (bench.current_backend(),)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        results = bench.run(sections, size=args.size, repeats=args.repeats, backends=backends,
                            log=log)
    except KeyboardInterrupt:
        print("kcnn-bench: error: interrupted", file=sys.stderr)
        return 130
    print(bench.format_table(results))
    if args.out:
        bench.write_results(args.out, results)
        print(f"results: {args.out}")
    failed = any("error" in s or s.get("errors") for s in results["sections"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
