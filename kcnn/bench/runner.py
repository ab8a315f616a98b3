"""``kcnn-bench``'s sections (the ``SECTIONS`` registry) and the run over them."""
from __future__ import annotations

import importlib
import os
import time

from kcnn.bench.common import BACKENDS, SIZES, BenchError, Context, current_backend, machine_facts

# Section name -> module with ``run(ctx) -> dict`` (and the ``child_*`` tasks it starts).
SECTIONS = {
    "conv": "kcnn.bench.conv",
    "user": "kcnn.bench.user_fit",
    "torch": "kcnn.bench.torch_reference",
    "inference": "kcnn.bench.inference",
    "serving": "kcnn.bench.serving",
    "train": "kcnn.bench.train",
    "data": "kcnn.bench.data",
    "gpu": "kcnn.bench.gpu",
}


def run(sections=SECTIONS, *, size="tiny", repeats=None, backends=None, workdir=None,
        log=None) -> dict:
    """Run ``sections`` and return ``{"machine": ..., "size": ..., "sections": {...}}``.

    Args:
        sections: names from ``SECTIONS``.
        size: ``"tiny"`` (seconds per section, small shapes) or ``"full"`` (the issue's shapes).
        repeats: timed repetitions per figure (default 3 tiny, 7 full).
        backends: Keras backends for the per-backend sections (default: the configured backend
            at ``tiny``, all three at ``full``).
        workdir: scratch folder for ONNX files and run folders (default: a temporary folder).
        log: callable taking one progress line, or None.

    A section that fails is reported as ``{"error": message}``; the others still run.
    """
    import tempfile

    for name in sections:
        if name not in SECTIONS:
            raise ValueError(f"sections must be names from {', '.join(SECTIONS)}; "
                             f"received {name!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; received size={size!r}")
    if repeats is None:
        repeats = 3 if size == "tiny" else 7
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1; received repeats={repeats!r}")
    if backends is None:
        backends = (current_backend(),) if size == "tiny" else BACKENDS
    backends = tuple(backends)
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"backends must be names from {', '.join(BACKENDS)}; received {b!r}")

    facts = machine_facts()
    results = {"kcnn_bench": 1, "size": size, "repeats": repeats, "backends": list(backends),
               "machine": facts, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="kcnn-bench-", dir=workdir) as tmp:
        ctx = Context(size=size, repeats=repeats, backends=backends, workdir=tmp, log=log)
        for name in sections:
            module = importlib.import_module(SECTIONS[name])
            started = time.perf_counter()
            ctx.say(f"[{name}] running ({size})")
            try:
                section = module.run(ctx)
            except BenchError as e:
                section = {"error": str(e)}
            section["seconds"] = round(time.perf_counter() - started, 2)
            results["sections"][name] = section
            ctx.say(f"[{name}] done in {section['seconds']:.1f} s")
    try:
        facts["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return results


def write_results(path, results: dict) -> str:
    """Write ``results`` as JSON to ``path`` atomically."""
    from kcnn.files import write_json

    return write_json(path, results)


