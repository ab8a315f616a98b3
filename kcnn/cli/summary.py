"""kcnn-summary: print a model's layer table (output shapes, parameters, MACs, activation memory).

    kcnn-summary lenet
    kcnn-summary vgg11 --conv explicit --input-shape 224,224,1 --width-ratio 4
    kcnn-summary alexnet --json
    kcnn-summary --list
"""
from __future__ import annotations

import argparse
import json
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, UsageError, entry_point


def _input_shape(text):
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three positive integers H,W,C (e.g. 28,28,1); received {text!r}")
    return shape


def build_parser():
    """The ``kcnn-summary`` argument parser."""
    parser = Parser(
        "kcnn-summary",
        description="Layer-by-layer table of a kcnn model: output shape, parameters, "
                    "multiply-accumulates (MACs) and activation memory per example.")
    parser.add_argument("name", nargs="?", help="model name (see --list), e.g. lenet, vgg11")
    parser.add_argument("--conv", choices=("builtin", "explicit"), default="builtin",
                        help="Keras Conv2D (builtin) or kcnn.layers.CrossCorrelation2D (explicit)")
    parser.add_argument("--input-shape", type=_input_shape, metavar="H,W,C",
                        help="input image shape (default: the model's standard input)")
    parser.add_argument("--num-classes", type=argtypes.positive_int, metavar="N",
                        help="number of output classes (default: the model's)")
    parser.add_argument("--width-ratio", type=argtypes.positive_int, metavar="R",
                        help="VGG only: divide every conv channel count by R")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--list", action="store_true", help="list the model names and exit")
    return parser


def run(args) -> None:
    """Build the model and print its table (or JSON, or the list of names)."""
    from kcnn import models  # imported after parsing: it loads Keras and its backend

    if args.list:
        print("\n".join(models.available()))
        return
    if args.name is None:
        raise UsageError(f"a model name is required; available models: "
                         f"{', '.join(models.available())}")
    kwargs = {"conv": args.conv}
    if args.input_shape is not None:
        kwargs["input_shape"] = args.input_shape
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.width_ratio is not None:
        if not args.name.startswith("vgg"):
            raise UsageError(f"--width-ratio applies to VGG models only; received model "
                             f"{args.name!r}")
        kwargs["width_ratio"] = args.width_ratio
    table = models.summary(models.build(args.name, **kwargs))  # ValueError: exit 2
    print(json.dumps(table.to_dict(), indent=2) if args.json else table)


main = entry_point(build_parser, run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
