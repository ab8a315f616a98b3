"""What every benchmark section shares: the context, timing statistics, machine facts, child runs.

The backend is fixed per process by ``KERAS_BACKEND``, so the measured work runs in child processes
(``python -m kcnn.bench.child SECTION:TASK SPEC``), one per backend or per measured variant; the
parent only orchestrates, collects their JSON and never imports a Keras backend itself.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time

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
    """Run ``kcnn.bench.child TASK`` with ``KERAS_BACKEND=backend`` and return its JSON result.

    Raises:
        BenchError: the child failed, timed out or printed no result.
    """
    child_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                 **(env or {})}
    cmd = [sys.executable, "-m", "kcnn.bench.child", task, json.dumps(spec)]
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
