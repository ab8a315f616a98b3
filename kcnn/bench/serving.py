"""``kcnn-bench --section serving``: ``kcnn-serve`` under concurrent load, every protocol.

A child process exports an (untrained — speed does not depend on the weights) LeNet to ONNX and
writes one 28x28 PNG digit. ``kcnn-serve --grpc-port 0`` then serves it on 127.0.0.1 and
``kcnn.export.loadtest.run_load`` drives it with 32 clients (threads, one keep-alive connection or
gRPC channel each) for a bounded number of requests per protocol, after a short warm-up: ``v1``
(``POST /v1/predict``, the PNG), ``v2`` (KServe V2 binary tensor), ``v2json`` (KServe V2 JSON
tensor, a flat ``data`` list), ``tfserving`` (b64 PNG instance) and ``grpc`` (KServe V2 gRPC,
``raw_input_contents``). Reported per protocol: requests/s, images/s, p50/p90/p99 latency,
errors, the server's mean micro-batch size and its CPU time per image (user + system time of the
server process over the run, from ``/proc``; the load generator runs on the same cores, so
throughput is shared with it, but the CPU per image is the server's alone). The ``grpc`` load then
runs once more against a bare grpc.aio server answering a fixed response (:mod:`kcnn.bench.grpc_floor`):
kcnn-serve's gRPC CPU per call and throughput against what grpcio alone costs and allows here.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from kcnn.bench import common as bench

CLIENTS = 32
REQUESTS = {"full": 3000, "tiny": 200}
WARMUP_REQUESTS = 64
PROTOCOLS = ("v1", "v2", "v2json", "tfserving", "grpc")
#: Server CPU milliseconds per image each protocol should stay under (issue 21's targets).
CPU_TARGETS_MS = {"v1": 1.0, "v2": 0.5, "v2json": 0.8, "tfserving": 1.0, "grpc": 0.5}
TARGETS = {"p99_ms": 50.0, "errors": 0, "json_vs_binary_cpu": 1.5}
FLOOR_COLUMNS = ("requests", "errors", "requests_per_s", "p50_ms", "p99_ms")


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


def _wait_for_addresses(proc, timeout):
    """Read the server's stdout until ``serving PATH on URL`` and ``grpc on HOST:PORT``."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen, url = [], None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line.strip())
        if line.startswith("serving ") and " on http" in line:
            url = line.rsplit(" on ", 1)[1].strip()
        elif line.startswith("grpc on ") and url is not None:
            return url, line.removeprefix("grpc on ").strip()
    _stop(proc)
    err = proc.stderr.read()
    raise bench.BenchError(f"kcnn-serve did not start: {(err or ' '.join(seen)).strip()[-300:]}")


def _cpu_seconds(pid) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``), else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _stats(url):
    try:
        with urllib.request.urlopen(url + "/v1/stats", timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return {}


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _measure(proc, url, grpc, body, protocol, requests):
    """One protocol's load run: the load report plus server CPU per image and mean batch."""
    from kcnn.export.loadtest import run_load

    common = {"clients": CLIENTS, "content_type": "image/png", "protocol": protocol,
              "grpc_address": grpc}
    run_load(url, body, requests=WARMUP_REQUESTS, **common)
    before, cpu_before = _stats(url), _cpu_seconds(proc.pid)
    load = run_load(url, body, requests=requests, max_seconds=300, **common)
    after, cpu_after = _stats(url), _cpu_seconds(proc.pid)
    images = after.get("images", 0) - before.get("images", 0)
    calls = after.get("calls", 0) - before.get("calls", 0)
    row = {"protocol": protocol, **{k: v for k, v in load.items()
                                    if k not in ("statuses", "failures", "protocol")}}
    row["mean_batch_size"] = images / calls if calls else None
    row["server_cpu_ms_per_image"] = (1000.0 * (cpu_after - cpu_before) / images
                                      if cpu_before is not None and images else None)
    return row, load


def _floor(url, body, requests):
    """The ``grpc`` load against the bare grpc.aio server of :mod:`kcnn.bench.grpc_floor` (the request
    built from ``url``'s metadata, as for kcnn-serve): throughput, latency and server CPU per call."""
    from kcnn.export.loadtest import run_load

    proc = subprocess.Popen([sys.executable, "-m", "kcnn.bench.grpc_floor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise bench.BenchError(f"the bare gRPC server did not start: {proc.stderr.read()[-300:]}")
        common = {"clients": CLIENTS, "protocol": "grpc", "grpc_address": f"127.0.0.1:{port}"}
        run_load(url, body, requests=WARMUP_REQUESTS, **common)
        cpu_before = _cpu_seconds(proc.pid)
        load = run_load(url, body, requests=requests, max_seconds=300, **common)
        cpu_after = _cpu_seconds(proc.pid)
    finally:
        _stop(proc)
    calls = load["requests"] - load["errors"]
    return {"server": "bare grpc.aio (floor)", **{k: load[k] for k in FLOOR_COLUMNS},
            "server_cpu_ms_per_call": (1000.0 * (cpu_after - cpu_before) / calls
                                       if cpu_before is not None and calls else None)}


def _checks(rows):
    by_protocol = {row["protocol"]: row for row in rows}
    checks = []
    for row in rows:
        cpu, target = row["server_cpu_ms_per_image"], CPU_TARGETS_MS[row["protocol"]]
        checks += [
            {"figure": f"{row['protocol']} server CPU ms/image", "value": cpu,
             "target": f"<= {target:g}", "meets_target": cpu is not None and cpu <= target},
            {"figure": f"{row['protocol']} p99 ms", "value": row["p99_ms"],
             "target": f"<= {TARGETS['p99_ms']:g}",
             "meets_target": row["p99_ms"] is not None and row["p99_ms"] <= TARGETS["p99_ms"]},
            {"figure": f"{row['protocol']} errors", "value": row["errors"], "target": "0",
             "meets_target": row["errors"] == 0}]
    json_cpu = by_protocol.get("v2json", {}).get("server_cpu_ms_per_image")
    binary_cpu = by_protocol.get("v2", {}).get("server_cpu_ms_per_image")
    if json_cpu and binary_cpu:
        ratio = json_cpu / binary_cpu
        checks.append({"figure": "V2 JSON / V2 binary server CPU", "value": ratio,
                       "target": f"<= {TARGETS['json_vs_binary_cpu']:g}",
                       "meets_target": ratio <= TARGETS["json_vs_binary_cpu"]})
    return checks


def run(ctx) -> dict:
    backend = ctx.backends[0]
    ctx.say(f"[serving] exporting LeNet on {backend}")
    files = bench.run_child("serving:export", {"workdir": ctx.workdir}, backend=backend,
                            timeout=ctx.timeout)
    with open(files["png"], "rb") as f:
        body = f.read()
    command = bench.console_command("kcnn-serve", "kcnn.cli.serve:main")
    proc = subprocess.Popen(command + [files["onnx"], "--host", "127.0.0.1", "--port", "0",
                                       "--grpc-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    rows, statuses, failures = [], {}, {}
    try:
        url, grpc = _wait_for_addresses(proc, 120)
        for protocol in PROTOCOLS:
            ctx.say(f"[serving] {protocol}: {CLIENTS} clients, {REQUESTS[ctx.size]} requests")
            row, load = _measure(proc, url, grpc, body, protocol, REQUESTS[ctx.size])
            rows.append({"model": "lenet", "onnx_exported_on": backend, **row})
            statuses[protocol], failures[protocol] = load["statuses"], load["failures"]
        ctx.say("[serving] gRPC floor: a bare grpc.aio server, the same load")
        floor = _floor(url, body, REQUESTS[ctx.size])
    finally:
        _stop(proc)
    kcnn_grpc = next(row for row in rows if row["protocol"] == "grpc")
    floor_rows = [{"server": "kcnn-serve", **{k: kcnn_grpc[k] for k in FLOOR_COLUMNS},
                   "server_cpu_ms_per_call": kcnn_grpc["server_cpu_ms_per_image"]}, floor]
    for row in floor_rows:
        row["cpu_vs_floor"] = (row["server_cpu_ms_per_call"] / floor["server_cpu_ms_per_call"]
                               if row["server_cpu_ms_per_call"] and floor["server_cpu_ms_per_call"] else None)
        row["throughput_vs_floor"] = row["requests_per_s"] / floor["requests_per_s"]
    return {
        "rows": rows,
        "statuses": statuses,
        "failures": failures,
        "targets": _checks(rows),
        "grpc_floor": floor_rows,
        "tables": [
            {"rows": "rows", "title": f"kcnn-serve, {CLIENTS} clients per protocol, loopback "
                                      "(load generator on the same cores)",
             "columns": ["protocol", "requests", "errors", "requests_per_s", "images_per_s",
                         "p50_ms", "p99_ms", "mean_batch_size", "server_cpu_ms_per_image"]},
            {"rows": "grpc_floor", "title": "KServe V2 gRPC, 1 image per call: kcnn-serve vs a bare grpc.aio "
                                            "server answering a fixed response (the floor of grpcio)",
             "columns": ["server", *FLOOR_COLUMNS, "server_cpu_ms_per_call", "cpu_vs_floor",
                         "throughput_vs_floor"]},
            {"rows": "targets", "columns": ["figure", "value", "target", "meets_target"]},
        ],
    }
