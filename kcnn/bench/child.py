"""Child-process entry of ``kcnn-bench``: ``python -m kcnn.bench.child MODULE:TASK JSON_SPEC``.

Runs ``kcnn.bench.<MODULE>.child_<TASK>(spec)`` under the ``KERAS_BACKEND`` the parent set and
prints its JSON result on one stdout line starting with ``KCNN_BENCH_RESULT``.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

from kcnn.bench.common import RESULT_MARKER


def main(argv=None) -> int:
    """Run one child task; 2 on bad usage."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or ":" not in argv[0]:
        print("usage: python -m kcnn.bench.child MODULE:TASK JSON_SPEC", file=sys.stderr)
        return 2
    section, task = argv[0].split(":", 1)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    module = importlib.import_module(f"kcnn.bench.{section}")
    result = getattr(module, f"child_{task}")(json.loads(argv[1]))
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
