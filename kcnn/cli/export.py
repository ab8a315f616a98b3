"""``kcnn-export``: a saved Keras image classifier (.keras) -> ONNX, verified, compressed, Triton.

    kcnn-export run/model.keras model.onnx --verify-with digits --labels @labels.txt
    kcnn-export model.keras model.onnx --quantize int8 --calibrate-with digits \
        --verify-with digits --triton-repo models/

Exit codes: 0 written, 2 bad usage or bad input (including a failed verification: the file is
removed), 1 unexpected failure; see :mod:`kcnn.cli.base`.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, UsageError, entry_point


def _labels_arg(text):
    """``a,b,c`` or ``@FILE`` (one label per line)."""
    if text.startswith("@"):
        path = pathlib.Path(text[1:])
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"labels file not found: {str(path)!r}")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    return [part.strip() for part in text.split(",")]


def build_parser() -> Parser:
    """The ``kcnn-export`` argument parser."""
    parser = Parser(
        "kcnn-export",
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
    parser.add_argument("--quantize", choices=("int8", "int8-dynamic", "fp16"), default=None,
                        help="compress the file: int8 = static QDQ int8 calibrated on "
                             "--calibrate-with (else --verify-with) images, best on CPU "
                             "(VNNI/AMX) and TensorRT; int8-dynamic = no calibration, CPU only; "
                             "fp16 = GPUs. The accuracy change is reported on --verify-with "
                             "images the calibration did not see")
    parser.add_argument("--calibrate-with", metavar="DATASET", default=None,
                        help="images calibrating --quantize int8: 'digits' or an .npz file with "
                             "x_test (default: part of --verify-with, kept apart from the "
                             "images the accuracy is measured on)")
    parser.add_argument("--calibration-samples", metavar="N", type=argtypes.positive_int,
                        default=128, help="number of calibration images (default 128)")
    parser.add_argument("--labels", type=_labels_arg, default=None,
                        help="class names: 'a,b,c' or @FILE with one name per line")
    parser.add_argument("--name", default=None, help="model name stored in the metadata")
    parser.add_argument("--triton-repo", metavar="DIR", default=None,
                        help="also write a Triton model repository DIR/<name>/1/model.onnx")
    parser.add_argument("--explicit-graph", action="store_true",
                        help="write kcnn's explicit layers as the cross-correlation formula spelled "
                             "out node by node (to read it in a graph viewer; several times slower "
                             "in onnxruntime) instead of the standard Conv/MaxPool/AveragePool "
                             "operators (the default; same numbers)")
    parser.add_argument("--explain", action="store_true",
                        help="also write OUT's explain file (model.explain.onnx: conv/pool "
                             "activations and first kernels for kcnn-serve's page)")
    return parser


def _checked_paths(args):
    model_path, output = pathlib.Path(args.model), pathlib.Path(args.output)
    if model_path.suffix != ".keras":
        raise ValueError(f"MODEL must be a .keras file; received {str(model_path)!r}")
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {str(model_path)!r}")
    import zipfile

    if not zipfile.is_zipfile(model_path):  # Keras would call it "File not found"
        raise ValueError(f"{str(model_path)!r} is not a Keras model file: a .keras file is a zip "
                         "archive (written by model.save('x.keras')) and this one is not")
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"OUT must end in '.onnx'; received {str(output)!r}")
    return model_path, output


def _load_keras_model(path):
    from kcnn.models import load

    try:
        return load(path, compile=False, safe_mode=True)
    except Exception as err:  # keras raises many types for corrupt/foreign files
        raise ValueError(f"cannot load {str(path)!r} as a Keras model: {err}") from None


def _verify(model, output, samples, args):
    from kcnn.export.verify import VerificationError, verify

    try:
        report = verify(model, output, samples[0], atol=args.atol)
    except VerificationError as err:
        raise ValueError(f"{err} Nothing was replaced.") from None
    print(f"verified on {args.verify_with} (n={report['n']}): max_abs_diff="
          f"{report['max_abs_diff']:.3g} mean_abs_diff={report['mean_abs_diff']:.3g} "
          f"top1_agreement={report['top1_agreement']:.4f}")


def _quantize_data(args, samples):
    """(calibration images or None, evaluation (x, y) or None), disjoint when from one source."""
    from kcnn.export.samples import load_samples

    if args.quantize != "int8":
        return None, samples
    if args.calibrate_with is not None and args.calibrate_with != args.verify_with:
        return load_samples(args.calibrate_with, limit=args.calibration_samples)[0], samples
    spec = args.calibrate_with or args.verify_with
    x, y = load_samples(spec, limit=args.calibration_samples + args.samples, seed=1)
    cut = min(args.calibration_samples, len(x) // 2)  # a small set: half and half
    evaluation = (x[cut:], None if y is None else y[cut:]) if args.verify_with else None
    return x[:cut], evaluation


def _quantize(output, args, samples):
    from kcnn.export import quantize as quant
    from kcnn.export.predictor import OnnxPredictor

    mode = args.quantize
    calibration, evaluation = _quantize_data(args, samples)
    predictor = OnnxPredictor(output, ["CPUExecutionProvider"])
    quant_samples = None
    if evaluation is not None:
        quant_samples = (predictor.preprocess(evaluation[0]), evaluation[1])
    if calibration is not None:
        calibration = predictor.preprocess(calibration)
    report = quant.quantize_onnx(output, output, mode, samples=quant_samples,
                                 calibration=calibration)
    kind = (f"static QDQ, {report['calibration_n']} calibration images" if mode == "int8"
            else mode)
    line = (f"quantized to {mode} ({kind}): {output} ({report['bytes']} bytes, "
            f"{report['bytes'] / report['float_bytes']:.2f}x float32)")
    if "top1_agreement" in report:
        line += (f"; on {report['n']} samples top1_agreement={report['top1_agreement']:.4f} "
                 f"max_abs_diff={report['max_abs_diff']:.3g}")
    if "accuracy_change" in report:
        line += (f" accuracy {report['float_accuracy']:.4f} -> "
                 f"{report['quantized_accuracy']:.4f} ({report['accuracy_change']:+.4f})")
    print(line)


def run(args) -> None:
    """Export, then verify / quantize / write the Triton repository as asked."""
    from kcnn.export.samples import load_samples

    model_path, output = _checked_paths(args)
    if args.calibrate_with is not None and args.quantize != "int8":
        raise UsageError("--calibrate-with only applies to --quantize int8")
    if args.quantize == "int8" and not (args.calibrate_with or args.verify_with):
        raise UsageError("--quantize int8 (static) needs calibration images: give "
                         "--calibrate-with DATASET or --verify-with DATASET "
                         "(or use --quantize int8-dynamic)")
    samples = load_samples(args.verify_with, limit=args.samples) if args.verify_with else None
    # Keras (and its backend) are imported only once the cheap checks have passed.
    from kcnn.export.onnx_export import export_onnx

    from kcnn.export.explainer import explain_path
    from kcnn.export.staging import staging_dir

    model = _load_keras_model(model_path)
    # Everything is written, verified and quantized in the staging folder; only a file that
    # passed every check replaces OUTPUT (and its explain file), so a failure leaves it as it was.
    # staging_dir first removes the staging folders of killed exports (never a live one's).
    with staging_dir(output, "staging") as staging:
        staged = staging / output.name
        result = export_onnx(model, staged, opset=args.opset, labels=args.labels,
                             model_name=args.name, explain=args.explain,
                             explicit_graph=args.explicit_graph)
        if samples is not None:
            _verify(model, staged, samples, args)
        if args.quantize:
            _quantize(staged, args, samples)
        if result.explain is not None:
            os.replace(result.explain, explain_path(output))
        os.replace(staged, output)
    print(f"wrote {output} (opset {result.opset}, input images [batch, "
          f"{', '.join(map(str, result.input_shape))}], {result.num_classes} classes, "
          f"{result.metadata['kcnn.backend']} backend)")
    if result.explain is not None:
        print(f"wrote {explain_path(output)} (explain data for kcnn-serve's page)")
    if args.triton_repo:
        from kcnn.export.triton import write_triton_repo

        print(f"wrote Triton model {write_triton_repo(output, args.triton_repo)}")


main = entry_point(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
