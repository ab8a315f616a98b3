"""``python -m kcnn.cli.loadtest URL FILE``: load-test a running ``kcnn-serve`` with one image.

Prints the :func:`kcnn.export.loadtest.run_load` report as JSON. Exit codes: 0 no failed
request, 1 some requests failed, 2 bad usage or input (see :mod:`kcnn.cli.base`).
"""
from __future__ import annotations

import json
import sys

from kcnn.cli import argtypes
from kcnn.cli.base import Parser, UsageError, entry_point
from kcnn.export.loadtest import PROTOCOLS


def build_parser() -> Parser:
    """The load-test argument parser."""
    parser = Parser("python -m kcnn.cli.loadtest",
                    description="Load-test a kcnn-serve server with one image.")
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("file", help="image file (PNG/JPEG) to send as the request body")
    parser.add_argument("--clients", type=argtypes.positive_int, default=32,
                        help="requests kept in flight (default 32)")
    parser.add_argument("--requests", type=argtypes.positive_int, default=512,
                        help="requests to complete (default 512)")
    parser.add_argument("--max-seconds", type=argtypes.positive_float, default=120.0,
                        help="stop after this long (default 120)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="v1",
                        help="route and request format: v1 (POST /v1/predict with the file, "
                             "default), tfserving (b64 instance), v2 (KServe V2 binary tensor "
                             "of the model's input shape; the file is not sent), v2json (the "
                             "same tensor as JSON), grpc (KServe V2 gRPC, see --grpc-address)")
    parser.add_argument("--grpc-address", metavar="HOST:PORT", default=None,
                        help="the server's gRPC address (its --grpc-port), for --protocol grpc")
    return parser


def run(args) -> int:
    """Send the load, print the report."""
    from kcnn.export.loadtest import run_load

    with open(args.file, "rb") as handle:
        body = handle.read()
    try:
        result = run_load(args.url, body, clients=args.clients, requests=args.requests,
                          max_seconds=args.max_seconds, protocol=args.protocol,
                          grpc_address=args.grpc_address)
    except ValueError as err:  # not a kcnn-serve server, or no metadata
        raise UsageError(str(err)) from None
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 else 1


main = entry_point(build_parser, run)

if __name__ == "__main__":
    sys.exit(main())
