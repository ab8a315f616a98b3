"""Console entry points of kcnn.export: ``kcnn-export``, ``kcnn-predict`` and ``kcnn-serve``
(thin wrappers; the server itself lives in :mod:`kcnn.export.serve`).

Errors are reported as ONE line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys

from kcnn import argtypes
from kcnn.stdio import native_stderr_silenced


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one-line messages (exit 2) instead of usage dumps."""

    def error(self, message):
        raise _UsageError(message)


def _fail(prog, message):
    text = " ".join(str(message).split())
    print(f"{prog}: error: {text}", file=sys.stderr)
    return 2


def _labels_arg(text):
    """``a,b,c`` or ``@FILE`` (one label per line)."""
    if text.startswith("@"):
        path = pathlib.Path(text[1:])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"labels file not found: {str(path)!r}")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    return [part.strip() for part in text.split(",")]


# --- kcnn-export ---------------------------------------------------------------------------

def _export_parser():
    parser = _Parser(
        prog="kcnn-export",
        description="Export a saved Keras image classifier (.keras) to ONNX, optionally verify it "
                    "against the Keras model, compress it, and add it to a Triton repository.")
    parser.add_argument("model", help="saved Keras model (.keras)")
    parser.add_argument("output", help="ONNX file to write (.onnx)")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset (default 17; at most 18 on TensorFlow, 23 otherwise)")
    parser.add_argument("--verify-with", metavar="DATASET", default=None,
                        help="'digits' (scikit-learn) or an .npz file with x_test [, y_test]: "
                             "compare Keras and onnxruntime outputs on it")
    parser.add_argument("--samples", type=argtypes.positive_int, default=256,
                        help="number of verification samples (default 256)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest accepted |Keras - ONNX| difference (default 1e-4)")
    parser.add_argument("--quantize", choices=("int8", "fp16"), default=None,
                        help="compress the file (accuracy change reported with --verify-with)")
    parser.add_argument("--labels", type=_labels_arg, default=None,
                        help="class names: 'a,b,c' or @FILE with one name per line")
    parser.add_argument("--name", default=None, help="model name stored in the metadata")
    parser.add_argument("--triton-repo", metavar="DIR", default=None,
                        help="also write a Triton model repository DIR/<name>/1/model.onnx")
    parser.add_argument("--verbose", action="store_true",
                        help="show the converters' and native libraries' own log output")
    return parser


def _load_keras_model(path):
    import keras

    import kcnn.layers  # noqa: F401  (registers kcnn's custom layers for deserialization)

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _export(args):
    from kcnn.export.samples import load_samples

    model_path, output = pathlib.Path(args.model), pathlib.Path(args.output)
    if model_path.suffix != ".keras":
        raise ValueError(f"MODEL must be a .keras file; received {str(model_path)!r}")
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {str(model_path)!r}")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"OUT must end in '.onnx'; received {str(output)!r}")
    samples = load_samples(args.verify_with, limit=args.samples) if args.verify_with else None
    # Keras (and its backend) are imported only once the cheap checks have passed.
    from kcnn.export import quantize as quant
    from kcnn.export.onnx_export import export_onnx
    from kcnn.export.predictor import OnnxPredictor
    from kcnn.export.verify import VerificationError, verify

    try:
        model = _load_keras_model(str(model_path))
    except Exception as err:  # keras raises many types for corrupt/foreign files
        raise ValueError(f"cannot load {str(model_path)!r} as a Keras model: {err}") from None

    result = export_onnx(model, output, opset=args.opset, labels=args.labels,
                         model_name=args.name)
    print(f"wrote {output} (opset {result.opset}, input images [batch, "
          f"{', '.join(map(str, result.input_shape))}], {result.num_classes} classes, "
          f"{result.metadata['kcnn.backend']} backend)")
    if samples is not None:
        x, y = samples
        try:
            report = verify(model, output, x, atol=args.atol)
        except VerificationError as err:
            output.unlink(missing_ok=True)
            raise ValueError(f"{err} The file was removed.") from None
        print(f"verified on {args.verify_with} (n={report['n']}): max_abs_diff="
              f"{report['max_abs_diff']:.3g} mean_abs_diff={report['mean_abs_diff']:.3g} "
              f"top1_agreement={report['top1_agreement']:.4f}")
    if args.quantize:
        quant_samples = None
        if samples is not None:
            x, y = samples
            quant_samples = (OnnxPredictor(output, ["CPUExecutionProvider"]).preprocess(x), y)
        report = quant.quantize_onnx(output, output, args.quantize, samples=quant_samples)
        line = f"quantized to {args.quantize}: {output} ({output.stat().st_size} bytes)"
        if "top1_agreement" in report:
            line += (f"; on {report['n']} samples top1_agreement={report['top1_agreement']:.4f} "
                     f"max_abs_diff={report['max_abs_diff']:.3g}")
        if "accuracy_change" in report:
            line += (f" accuracy {report['float_accuracy']:.4f} -> "
                     f"{report['quantized_accuracy']:.4f} ({report['accuracy_change']:+.4f})")
        print(line)
    if args.triton_repo:
        from kcnn.export.triton import write_triton_repo

        target = write_triton_repo(output, args.triton_repo)
        print(f"wrote Triton model {target}")


def export_main(argv=None):
    """``kcnn-export MODEL.keras OUT.onnx [--opset N] [--verify-with DATASET] [--quantize int8]
    [--triton-repo DIR]``; returns the exit code."""
    prog = "kcnn-export"
    try:
        args = _export_parser().parse_args(argv)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with contextlib.nullcontext() if args.verbose else native_stderr_silenced():
            _export(args)
    except _UsageError as err:
        return _fail(prog, err)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        return _fail(prog, err)
    return 0


# --- kcnn-predict --------------------------------------------------------------------------

def _predict_parser():
    parser = _Parser(prog="kcnn-predict",
                     description="Classify image files (PNG, JPEG, …) with a kcnn ONNX model.")
    parser.add_argument("model", help="ONNX model written by kcnn-export")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--top-k", type=argtypes.positive_int, default=1,
                        help="number of labels per image (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=64,
                        help="images per onnxruntime call (default 64)")
    return parser


def _read_image(path):
    from PIL import Image, UnidentifiedImageError

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read {str(path)!r} as an image: {err}") from None


def _predict(args):
    from kcnn.export.predictor import OnnxPredictor

    predictor = OnnxPredictor(args.model, batch_size=args.batch_size)
    if args.top_k > predictor.num_classes:
        raise ValueError(f"--top-k must be at most {predictor.num_classes} (the number of "
                         f"classes); received {args.top_k}")
    images = [_read_image(path) for path in args.images]
    prediction = predictor.predict(images, top_k=args.top_k)
    rows = prediction.to_list()
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


def predict_main(argv=None):
    """``kcnn-predict MODEL.onnx IMAGE [IMAGE ...] [--top-k K] [--json]``; returns the exit code."""
    prog = "kcnn-predict"
    try:
        args = _predict_parser().parse_args(argv)
        _predict(args)
    except _UsageError as err:
        return _fail(prog, err)
    except (ValueError, TypeError, OSError) as err:
        return _fail(prog, err)
    return 0


# --- kcnn-serve (written by the serving helper; implementation in kcnn.export.serve) -------

def serve_main(argv=None) -> int:
    """``kcnn-serve MODEL.onnx [--host H] [--port P] ...``: see :mod:`kcnn.export.serve`."""
    from kcnn.export.serve import main

    return main(argv)
