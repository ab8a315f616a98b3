"""``kcnn-serve``: serve an ONNX image classifier over HTTP and gRPC (:mod:`kcnn.export.serving`).

    kcnn-serve model.onnx --port 8000 --grpc-port 8001
    curl -F file=@digit.png http://127.0.0.1:8000/v1/predict

Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 2 for bad usage or input (missing or
invalid model, unknown provider, an address that cannot be bound), 1 unexpected failure.
"""
from __future__ import annotations

import os
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, UsageError, entry_point, one_line
from kcnn.export.serving.batcher import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS
from kcnn.export.serving.settings import (DEFAULT_GRPC_MAX_CONCURRENCY,
                                          DEFAULT_GRPC_MAX_MESSAGE_BYTES, ServerSettings)
from kcnn.export.serving.protocol import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_MAX_HEADER_BYTES
from kcnn.export.serving.requests import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES,
                                          DEFAULT_MAX_REQUEST_PIXELS, DEFAULT_READ_TIMEOUT_S,
                                          MAX_IMAGE_PIXELS)


def _model_name(text: str) -> str:
    """A model name or version usable in a URL path segment: letters, digits, ``_ . -``."""
    import argparse
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"must be letters, digits, '_', '.' or '-' only; received {text!r}")
    return text


def build_parser() -> Parser:
    """The ``kcnn-serve`` argument parser."""
    parser = Parser(
        "kcnn-serve",
        description="Serve an ONNX image classifier over HTTP: POST /v1/predict (image file body, "
                    'multipart upload or JSON {"instances": [...]}), GET /v1/health, '
                    "GET /v1/metadata, GET /v1/stats; KServe V2 (/v2/...), TF Serving REST "
                    "(/v1/models/NAME:predict) and Prometheus GET /metrics; KServe V2 over "
                    "gRPC with --grpc-port.")
    parser.add_argument("model", help="ONNX file written by kcnn-export")
    parser.add_argument("--host", metavar="ADDRESS", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", metavar="N", type=argtypes.port, default=8000,
                        help="port (default 8000; 0: any free)")
    parser.add_argument("--max-batch", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_MAX_BATCH,
                        help=f"most images per onnxruntime call (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--max-wait-ms", metavar="MS", type=argtypes.non_negative_float,
                        default=DEFAULT_MAX_WAIT_MS,
                        help="longest wait for more requests to fill a batch "
                             f"(default {DEFAULT_MAX_WAIT_MS:g} ms)")
    parser.add_argument("--max-body-bytes", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body; larger ones get 413 (default "
                             f"{DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-instances", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_MAX_INSTANCES,
                        help="most images in one request (JSON instances or multipart files); "
                             f"more get 413 (default {DEFAULT_MAX_INSTANCES})")
    parser.add_argument("--max-image-pixels", metavar="N", type=argtypes.positive_int,
                        default=MAX_IMAGE_PIXELS,
                        help="largest width x height of one image, read from its header before "
                             f"decoding; larger ones get 413 (default {MAX_IMAGE_PIXELS})")
    parser.add_argument("--max-request-pixels", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_MAX_REQUEST_PIXELS,
                        help="most decoded pixels of all the images of one request together; "
                             f"more get 413 (default {DEFAULT_MAX_REQUEST_PIXELS})")
    parser.add_argument("--max-header-bytes", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_MAX_HEADER_BYTES,
                        help="largest request line + headers; larger get 431 and the connection "
                             f"closes (default {DEFAULT_MAX_HEADER_BYTES})")
    parser.add_argument("--header-timeout", metavar="S", type=argtypes.positive_float,
                        default=DEFAULT_HEADER_TIMEOUT_S,
                        help="seconds a client has to send the request line and headers; "
                             f"slower ones get 408 and are closed (default {DEFAULT_HEADER_TIMEOUT_S:g})")
    parser.add_argument("--read-timeout", metavar="S", type=argtypes.positive_float,
                        default=DEFAULT_READ_TIMEOUT_S,
                        help="seconds without body data after which a request gets 408 "
                             f"(default {DEFAULT_READ_TIMEOUT_S:g})")
    parser.add_argument("--providers", metavar="LIST", default=None,
                        help="comma-separated onnxruntime execution providers, in order of "
                             "preference (default: CUDA if it loads, else CPU)")
    parser.add_argument("--model-name", metavar="NAME", type=_model_name, default=None,
                        help="the model's name on every route (/v2/models/NAME, "
                             "/v1/models/NAME:predict; default: the ONNX metadata's model name, "
                             "else the file stem)")
    parser.add_argument("--model-version", metavar="V", type=_model_name, default="1",
                        help="the model's version on the versioned routes (default 1)")
    parser.add_argument("--grpc-port", metavar="N", type=argtypes.port, default=None,
                        help="also serve KServe V2 over gRPC (inference.GRPCInferenceService, "
                             "as tritonclient.grpc speaks it) on this port of the same host "
                             "(0: any free; default: no gRPC)")
    parser.add_argument("--grpc-max-message-bytes", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_GRPC_MAX_MESSAGE_BYTES,
                        help="largest gRPC message in or out; larger ones get RESOURCE_EXHAUSTED "
                             f"(default {DEFAULT_GRPC_MAX_MESSAGE_BYTES})")
    parser.add_argument("--grpc-max-concurrency", metavar="N", type=argtypes.positive_int,
                        default=DEFAULT_GRPC_MAX_CONCURRENCY,
                        help="most gRPC calls in progress at once; more get RESOURCE_EXHAUSTED "
                             f"(default {DEFAULT_GRPC_MAX_CONCURRENCY})")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def settings_from_args(args) -> ServerSettings:
    """The parsed arguments as the server's one settings object."""
    providers = ([p.strip() for p in args.providers.split(",") if p.strip()]
                 if args.providers else None)
    return ServerSettings(
        host=args.host, port=args.port, grpc_port=args.grpc_port, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
        max_instances=args.max_instances, max_image_pixels=args.max_image_pixels,
        max_request_pixels=args.max_request_pixels, max_header_bytes=args.max_header_bytes,
        header_timeout_s=args.header_timeout, read_timeout_s=args.read_timeout,
        grpc_max_message_bytes=args.grpc_max_message_bytes,
        grpc_max_concurrency=args.grpc_max_concurrency, model_name=args.model_name,
        model_version=args.model_version, providers=providers, access_log=args.access_log)


def run(args) -> None:
    """Serve until SIGINT/SIGTERM."""
    from kcnn.export.serving.runner import GrpcBindError, serve

    if not os.path.isfile(args.model):
        raise UsageError(f"model file not found: {args.model}")
    try:
        serve(args.model, settings_from_args(args))
    except GrpcBindError as exc:
        raise UsageError(one_line(exc)) from None
    except OSError as exc:  # the address is taken, not local, or not allowed
        raise UsageError(f"cannot serve on {args.host}:{args.port}: "
                         f"{one_line(exc.strerror or exc)}") from None


main = entry_point(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
