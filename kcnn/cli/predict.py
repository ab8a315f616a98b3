"""``kcnn-predict``: classify image files with a kcnn ONNX model (onnxruntime, no Keras).

    kcnn-predict model.onnx digit.png photo.jpg --top-k 3
    kcnn-predict model.onnx *.png --json

Images are decoded by :mod:`kcnn.export.images`, the decoder the server and
:class:`~kcnn.export.OnnxPredictor` use: a file gets the same prediction every way.
Exit codes: see :mod:`kcnn.cli.base` (2 for a missing/unreadable file or a bad flag).
"""
from __future__ import annotations

import json
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, entry_point


def build_parser() -> Parser:
    """The ``kcnn-predict`` argument parser."""
    parser = Parser("kcnn-predict",
                    description="Classify image files (PNG, JPEG, …) with a kcnn ONNX model.")
    parser.add_argument("model", help="ONNX model written by kcnn-export")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=argtypes.positive_int, default=1,
                        help="number of labels per image (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=64,
                        help="images per onnxruntime call (default 64)")
    return parser


def run(args) -> None:
    """Decode every file, predict, print one line per file (or one JSON document)."""
    from kcnn.export import images
    from kcnn.export.predictor import OnnxPredictor

    predictor = OnnxPredictor(args.model, batch_size=args.batch_size)
    if args.top_k > predictor.num_classes:
        raise ValueError(f"--top-k must be at most {predictor.num_classes} (the number of "
                         f"classes); received {args.top_k}")
    arrays = [images.read(path) for path in args.images]
    rows = predictor.predict(arrays, top_k=args.top_k).to_list()
    if args.json:
        print(json.dumps({
            "model": str(args.model),
            "provider": predictor.provider,
            "predictions": [{"file": str(path), "top_k": row}
                            for path, row in zip(args.images, rows)],
        }, indent=2))
        return
    for path, row in zip(args.images, rows):
        ranked = ", ".join(f"{item['label']} {item['score']:.4f}" for item in row)
        print(f"{path}: {ranked}")


main = entry_point(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
