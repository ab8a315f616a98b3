"""Benchmarks behind ``kcnn-bench``: every figure is a ratio against a reference measured in the
same run (and, where the backend allows it, the same process), after warm-up, as the median of
several repetitions.

Sections (each a module ``kcnn.bench_<section>`` with a ``run(ctx) -> dict``):

``conv``       ``CrossCorrelation2D`` vs ``Conv2D``: training-step and forward time, peak RSS,
               per backend (TF with and without XLA, JAX jit, torch eager), LeNet and a VGG block.
``torch``      LeNet training throughput of kcnn's training path vs a plain PyTorch eager LeNet.
``inference``  onnxruntime vs ``model.predict`` vs a direct model call: batch-1 latency and
               batch-256 throughput for LeNet, AlexNet and VGG-11.
``serving``    ``kcnn-serve`` under 32 concurrent clients on loopback.
``train``      ``kcnn-train``'s default run: accuracy and wall time, explicit vs builtin.

The backend is fixed per process by ``KERAS_BACKEND``, so the work runs in child processes
(``python -m kcnn.bench_child``), one per backend or per measured variant; this process only
orchestrates, collects their JSON and never imports a Keras backend itself.

Example::

    from kcnn import bench
    results = bench.run(["conv"], size="tiny", backends=["torch"])
    print(bench.format_table(results))
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time

__all__ = ["SECTIONS", "SIZES", "BACKENDS", "BenchError", "Context", "run", "run_child",
           "machine_facts", "format_table", "write_results", "time_calls", "median",
           "percentile", "peak_rss_mib", "current_backend", "console_command"]

SECTIONS = ("conv", "torch", "inference", "serving", "train")
SIZES = ("tiny", "full")
BACKENDS = ("tensorflow", "jax", "torch")
RESULT_MARKER = "KCNN_BENCH_RESULT "
_LIBRARIES = ("kcnn", "keras", "tensorflow", "jax", "jaxlib", "torch", "numpy", "onnx",
              "onnxruntime-gpu", "onnxruntime", "tf2onnx", "jax2onnx")


class BenchError(RuntimeError):
    """A benchmark child process failed (the message carries its last error line)."""


@dataclasses.dataclass
class Context:
    """What a section needs to know: size, repetitions, backends and a scratch folder."""

    size: str = "tiny"
    repeats: int = 5
    backends: tuple = ("tensorflow",)
    workdir: str = "."
    timeout: float = 1800.0
    log: object = None

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


# ----------------------------------------------------------------------------------- statistics
def median(values):
    """Median of a non-empty sequence of numbers."""
    return float(statistics.median(values))


def percentile(values, q):
    """The ``q``-th percentile (0..100, linear interpolation) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def time_calls(fn, *, warmup=1, repeats=5, number=1):
    """Seconds per call of ``fn()`` for each of ``repeats`` timed groups of ``number`` calls,
    after ``warmup`` untimed calls. ``fn`` must block until its result is ready."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return times


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (``ru_maxrss``).

    Linux carries ``ru_maxrss`` across ``exec``: a process started directly by a big parent
    begins at that parent's peak. The benchmark parent therefore stays light (it never imports a
    backend), so its children's figures are their own.
    """
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


# ----------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def current_backend() -> str:
    """The Keras backend a child started from here would use (without importing Keras)."""
    from kcnn.training.devices import configured_backend

    return configured_backend()


def machine_facts() -> dict:
    """CPU model, core counts, load average, OS, Python and library versions, date (UTC)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "default_backend": current_backend(),
        "versions": {name: v for name in _LIBRARIES if (v := _version(name))},
    }


# ----------------------------------------------------------------------------------- children
def run_child(task: str, spec: dict, *, backend: str, timeout: float = 1800.0,
              env: dict | None = None) -> dict:
    """Run ``kcnn.bench_child TASK`` with ``KERAS_BACKEND=backend`` and return its JSON result.

    Raises:
        BenchError: the child failed, timed out or printed no result.
    """
    child_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                 **(env or {})}
    cmd = [sys.executable, "-m", "kcnn.bench_child", task, json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=child_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{task} on {backend}: timed out after {timeout:g} s") from None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            if proc.returncode == 0:
                return json.loads(line[len(RESULT_MARKER):])
            break
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}, no output"
    raise BenchError(f"{task} on {backend}: {last}")


# ----------------------------------------------------------------------------------- running
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
            module = importlib.import_module(f"kcnn.bench_{name}")
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


# ----------------------------------------------------------------------------------- table
def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:,.0f}" if abs(value) >= 1000 \
                else f"{value:.1f}"
        return f"{value:.2e}"
    return str(value)


def _table(rows, columns):
    rows = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_table(results: dict) -> str:
    """Human-readable tables of ``results`` (one per section) with a machine header."""
    m = results["machine"]
    out = [f"kcnn-bench {results['size']}  {m['date']}  {m['cpu']}  {m['cores']} cores  "
           f"load {m.get('load_average')}",
           "  ".join(f"{k} {v}" for k, v in m["versions"].items())]
    for name, section in results["sections"].items():
        out.append("")
        out.append(f"== {name} ({section.get('seconds', 0):.0f} s)")
        if "error" in section:
            out.append(f"error: {section['error']}")
        for table in section.get("tables", []):
            rows = section.get(table["rows"], [])
            if rows:
                if table.get("title"):
                    out.append(table["title"])
                out.append(_table(rows, table["columns"]))
        for error in section.get("errors", []):
            out.append(f"error: {error}")
    return "\n".join(out)


def console_command(script: str, entry: str) -> list:
    """Command line that runs console script ``script`` of this installation.

    ``entry`` is its ``module:function``; used when the script is not next to this Python (e.g.
    a source checkout without ``pip install``).
    """
    import shutil

    candidate = os.path.join(os.path.dirname(sys.executable), script)
    path = candidate if os.path.isfile(candidate) else shutil.which(script)
    if path:
        return [path]
    module, function = entry.split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function} as m; "
                                  f"sys.exit(m())"]
