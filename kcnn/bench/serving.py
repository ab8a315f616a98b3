"""``kcnn-bench --section serving``: ``kcnn-serve`` under concurrent load on loopback.

A child process exports an (untrained — speed does not depend on the weights) LeNet to ONNX and
writes one 28x28 PNG digit. ``kcnn-serve`` then serves it on 127.0.0.1 at an ephemeral port and
``kcnn.export.loadtest.run_load`` drives it with 32 clients, each POSTing the PNG over a
keep-alive connection, for a bounded number of requests (after a short warm-up run). Reported:
requests/s, images/s, p50/p90/p99 latency, errors, and the server's mean micro-batch size.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request

from kcnn.bench import common as bench

CLIENTS = 32
REQUESTS = {"full": 5000, "tiny": 300}
WARMUP_REQUESTS = 64
TARGETS = {"images_per_s": 1000.0, "p99_ms": 50.0, "errors": 0}


def child_export(spec):
    """Export LeNet to ``spec['workdir']/lenet.onnx`` and write a digit PNG; return the paths."""
    import io

    import keras
    import numpy as np
    from PIL import Image

    from kcnn import data, export, models

    keras.utils.set_random_seed(0)
    model = models.lenet(input_shape=(28, 28, 1))
    onnx_path = os.path.join(spec["workdir"], "lenet-serving.onnx")
    export.export_onnx(model, onnx_path, labels=[str(k) for k in range(10)])
    image = data.synthetic(10, image_shape=(28, 28, 1)).x_train[0, :, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    png_path = os.path.join(spec["workdir"], "digit.png")
    with open(png_path, "wb") as f:
        f.write(buffer.getvalue())
    return {"onnx": onnx_path, "png": png_path}


def _wait_for_url(proc, timeout):
    """Read the server's stdout until its ``serving PATH on URL`` line; return the URL."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line.strip())
        if line.startswith("serving ") and " on http" in line:
            return line.rsplit(" on ", 1)[1].strip()
    _stop(proc)
    err = proc.stderr.read()
    raise bench.BenchError(f"kcnn-serve did not start: {(err or ' '.join(seen)).strip()[-300:]}")


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(ctx) -> dict:
    from kcnn.export.loadtest import run_load

    backend = ctx.backends[0]
    ctx.say(f"[serving] exporting LeNet on {backend}")
    files = bench.run_child("serving:export", {"workdir": ctx.workdir}, backend=backend,
                            timeout=ctx.timeout)
    with open(files["png"], "rb") as f:
        body = f.read()
    command = bench.console_command("kcnn-serve", "kcnn.cli.serve:main")
    proc = subprocess.Popen(command + [files["onnx"], "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        url = _wait_for_url(proc, 120)
        ctx.say(f"[serving] {url}: {CLIENTS} clients, {REQUESTS[ctx.size]} requests")
        run_load(url, body, clients=CLIENTS, requests=WARMUP_REQUESTS, content_type="image/png")
        load = run_load(url, body, clients=CLIENTS, requests=REQUESTS[ctx.size],
                        content_type="image/png", max_seconds=300)
        try:
            with urllib.request.urlopen(url + "/v1/stats", timeout=10) as response:
                stats = json.loads(response.read())
        except (OSError, ValueError):
            stats = None
    finally:
        _stop(proc)
    row = {"model": "lenet", "onnx_exported_on": backend, **{k: v for k, v in load.items()
                                                              if k not in ("statuses",
                                                                           "failures")}}
    if isinstance(stats, dict):
        batcher = stats.get("batcher", stats)
        row["mean_batch_size"] = batcher.get("mean_batch_size")
    checks = [{"figure": "images/s", "value": row["images_per_s"],
               "target": f">= {TARGETS['images_per_s']:g}",
               "meets_target": row["images_per_s"] >= TARGETS["images_per_s"]},
              {"figure": "p99 ms", "value": row["p99_ms"], "target": f"<= {TARGETS['p99_ms']:g}",
               "meets_target": row["p99_ms"] is not None and row["p99_ms"] <= TARGETS["p99_ms"]},
              {"figure": "errors", "value": row["errors"], "target": "0",
               "meets_target": row["errors"] == 0}]
    return {
        "rows": [row],
        "statuses": load["statuses"],
        "failures": load["failures"],
        "targets": checks,
        "tables": [
            {"rows": "rows", "title": f"kcnn-serve, {CLIENTS} clients, PNG bodies, loopback",
             "columns": ["model", "requests", "errors", "requests_per_s", "images_per_s",
                         "p50_ms", "p90_ms", "p99_ms", "mean_batch_size"]},
            {"rows": "targets", "columns": ["figure", "value", "target", "meets_target"]},
        ],
    }
