"""kcnn-bench: helpers, CLI usage errors, and each section once at the tiny size (no timing
assertions: figures only have to be present, finite and consistent)."""
import json
import math
import os
import subprocess
import sys

import pytest

from kcnn import bench
from kcnn.bench import arrangements
from kcnn.cli import bench as cli

# ----------------------------------------------------------------------------------- helpers


def test_median_and_percentile():
    assert bench.median([3, 1, 2]) == 2
    assert bench.percentile([5], 99) == 5
    assert bench.percentile([0, 10], 50) == 5
    assert bench.percentile(list(range(101)), 99) == pytest.approx(99)
    assert bench.percentile([4, 1, 3, 2], 0) == 1 and bench.percentile([4, 1, 3, 2], 100) == 4


def test_time_calls_counts_warmup_and_groups():
    calls = []
    times = bench.time_calls(lambda: calls.append(1), warmup=2, repeats=3, number=4)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert len(calls) == 2 + 3 * 4


def test_machine_facts():
    facts = bench.machine_facts()
    for key in ("date", "cpu", "cores", "usable_cores", "load_average", "python", "versions"):
        assert key in facts
    assert facts["cores"] >= 1 and facts["cpu"]
    assert {"keras", "numpy", "kcnn"} <= set(facts["versions"])
    assert facts["default_backend"] in bench.BACKENDS


def test_peak_rss_grows_with_allocation():
    # A fresh interpreter, forked from a small shell: Linux carries ru_maxrss across exec, so a
    # child exec'd straight from this (big) pytest process would start at pytest's peak.
    code = ("from kcnn import bench; b = bench.peak_rss_mib(); block = bytearray(128 << 20); "
            "block[::4096] = b'x' * len(block[::4096]); print(b, bench.peak_rss_mib())")
    out = subprocess.run(["sh", "-c", '"$0" -c "$1"; exit $?', sys.executable, code],
                         capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert after >= before + 100


@pytest.mark.parametrize("kwargs, match", [
    ({"sections": ["nope"]}, "sections"),
    ({"size": "huge"}, "size"),
    ({"repeats": 0}, "repeats"),
    ({"backends": ["theano"]}, "backends"),
])
def test_run_rejects_bad_arguments(kwargs, match):
    args = {"sections": ["conv"], **kwargs}
    with pytest.raises(ValueError, match=match):
        bench.run(args.pop("sections"), **args)


def test_format_table_shows_rows_and_errors():
    results = {"size": "tiny", "machine": bench.machine_facts(), "sections": {
        "conv": {"seconds": 1.0, "rows": [{"a": 1.5, "b": True, "c": [1.234, 0.5]}], "errors": ["child died"],
                 "tables": [{"rows": "rows", "columns": ["a", "b", "c"], "title": "T"}]},
        "torch": {"seconds": 0.5, "error": "boom"},
    }}
    text = bench.format_table(results)
    assert "== conv" in text and "T" in text and "1.5" in text and "yes" in text and "1.23 0.5" in text
    assert "error: child died" in text and "error: boom" in text


def test_write_results_is_atomic_json(tmp_path):
    path = tmp_path / "r.json"
    bench.write_results(path, {"x": float("nan"), "y": [1, 2]})
    assert json.loads(path.read_text()) == {"x": None, "y": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_run_child_reports_failure():
    with pytest.raises(bench.BenchError, match="conv:nothing"):
        bench.run_child("conv:nothing", {}, backend=bench.current_backend(), timeout=120)


# ----------------------------------------------------------------------------------- CLI

def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-c", "import sys; from kcnn.cli.bench import main; "
                           "sys.exit(main())", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.parametrize("args", [
    ["--section", "cpu"],
    ["--size", "huge"],
    ["--repeats", "0"],
    ["--backends", "theano"],
    ["--out", "/nonexistent-folder/results.json"],
])
def test_cli_usage_errors(args):
    proc = _cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcnn-bench: error:")


def test_cli_help():
    assert cli.build_parser().format_help().count("--section") >= 1
    proc = _cli("--help")
    assert proc.returncode == 0 and "serving" in proc.stdout


# ----------------------------------------------------------------------------------- sections

def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _check_conv(section):
    assert {(r["model"], r["mode"]) for r in section["time"]} == {
        ("lenet", "train"), ("lenet", "forward"), ("vgg_block", "train"), ("vgg_block", "forward")}
    for row in section["time"]:
        assert _finite(row["builtin_ms"]) and _finite(row["explicit_ms"])
        assert row["ratio"] == pytest.approx(row["explicit_ms"] / row["builtin_ms"])
    (floor,) = section["floor"]  # one per backend: the current one
    assert floor["model"] == "vgg_block" and _finite(floor["conv_ms"]) and _finite(floor["matmul_ms"])
    assert floor["ratio"] == pytest.approx(floor["matmul_ms"] / floor["conv_ms"])
    assert floor["floor_within_target"] == (floor["ratio"] <= floor["target"])
    assert floor["explicit_vs_floor"] == pytest.approx(floor["explicit_ms"] / floor["matmul_ms"])
    assert floor["explicit_meets_floor_target"] == (floor["explicit_vs_floor"] <= floor["floor_target"])
    assert {r["mode"] for r in section["memory"]} == {"train", "forward"}
    for row in section["memory"]:
        assert row["builtin_peak_mib"] > 50 and row["explicit_peak_mib"] > 50
        assert row["ratio"] == pytest.approx(row["explicit_peak_mib"] / row["builtin_peak_mib"])
    backend = bench.current_backend()  # each arrangement kept on this backend: kept / reference
    expected = [(c[0], c[2], c[3]) for c in arrangements.CLAIMS if c[1] == backend]
    assert [(r["arrangement"], r["model"], r["metric"]) for r in section["arrangements"]] == expected
    for row in section["arrangements"]:
        assert _finite(row["kept"]) and row["kept"] > 0 and _finite(row["reference"]) and row["reference"] > 0
        assert row["ratio"] == pytest.approx(row["kept"] / row["reference"])
        assert row["pays"] == (row["ratio"] <= arrangements.PAYS)
        assert row["metric"] == "time_ms" or row["kept"] > 50  # peak RSS of a whole process


def _check_user(section):
    assert [r["variant"] for r in section["lenet"]] == ["builtin", "explicit", "pool", "conv"]
    for row in section["lenet"]:
        assert _finite(row["train_s"]) and 0 < row["train_s"] <= row["fit_s"]
        builtin = section["lenet"][0]
        assert row["ratios"] == [pytest.approx(row["train_s"] / builtin["train_s"])]  # one child at --size tiny
        assert row["ratio"] == pytest.approx(row["ratios"][0])
        assert row["fit_ratio"] == pytest.approx(row["fit_s"] / builtin["fit_s"])
        assert row["met"] is None or row["met"] == (row["ratio"] <= row["target"])
    (memory,) = section["memory"]
    assert memory["builtin_mib"] > 50 and memory["explicit_mib"] > 50
    assert memory["ratio"] == pytest.approx(memory["explicit_mib"] / memory["builtin_mib"])
    assert [r["conv"] for r in section["bf16"]] == ["builtin", "explicit"]
    for row in section["bf16"]:
        assert row["ratio"] == pytest.approx(row["bf16_s"] / row["float32_s"])


def _check_torch(section):
    assert section["reference"]["examples_per_second"] > 0
    row, plain = section["rows"]
    assert row["variant"] == "default" and row["examples_per_second"] > 0
    assert row["ratio"] == pytest.approx(
        row["examples_per_second"] / section["reference"]["examples_per_second"])
    assert plain["variant"] == "plain_keras" and plain["examples_per_second"] > 0
    assert row["vs_plain_keras"] == pytest.approx(
        row["examples_per_second"] / plain["examples_per_second"])
    assert row["plain_keras_target"] >= 1.0


def _check_inference(section):
    assert {(r["model"], r["method"]) for r in section["rows"]} == {
        (m, k) for m in ("lenet", "alexnet", "vgg11") for k in ("onnxruntime", "predict", "call")}
    for row in section["rows"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_s"] > 0
        if row["method"] == "onnxruntime":
            assert row["ort_latency_speedup"] == 1 and row["throughput_vs_ort"] == 1
    assert {(r["model"], r["variant"]) for r in section["quantized"]} == {
        (m, v) for m in ("lenet", "vgg11") for v in ("fp32", "int8", "int8-dynamic", "fp16")}
    for row in section["quantized"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_s"] > 0
        assert 0 <= row["top1_agreement"] <= 1 and row["bytes"] > 0
        if row["variant"] == "fp32":
            assert row["latency_vs_fp32"] == 1 and row["size_vs_fp32"] == 1
        else:
            assert row["eval_n"] > 0 and row["size_vs_fp32"] < 1
    assert {(r["model"], r["form"]) for r in section["explicit"]} == {
        ("lenet", f) for f in ("builtin", "explicit", "explicit-graph")}
    for row in section["explicit"]:
        assert row["p50_ms"] > 0 and row["batch_ms"] > 0
        assert row["batch_vs_builtin"] == pytest.approx(row["batch_ms"] / next(
            r["batch_ms"] for r in section["explicit"] if r["form"] == "builtin"))
        assert (row["n_conv"] > 0) == (row["form"] != "explicit-graph")
    assert len(section["targets"]) == 4 + 2  # LeNet explicit / built-in: batch 1 and batch 64


def _check_serving(section):
    protocols = ["v1", "v2", "v2json", "tfserving", "grpc"]
    assert [row["protocol"] for row in section["rows"]] == protocols
    for row in section["rows"]:
        assert row["requests"] == 200 and row["errors"] == 0
        assert row["images_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["server_cpu_ms_per_image"] > 0 and row["mean_batch_size"] >= 1
    assert section["statuses"] == {protocol: {"200": 200} for protocol in protocols}
    assert any(check["figure"] == "V2 JSON / V2 binary server CPU" for check in section["targets"])
    kcnn, floor = section["grpc_floor"]
    assert (kcnn["server"], floor["server"]) == ("kcnn-serve", "bare grpc.aio (floor)")
    assert floor["requests"] == 200 and floor["errors"] == 0 and floor["server_cpu_ms_per_call"] > 0
    assert kcnn["server_cpu_ms_per_call"] == section["rows"][-1]["server_cpu_ms_per_image"]
    assert kcnn["cpu_vs_floor"] == pytest.approx(kcnn["server_cpu_ms_per_call"] / floor["server_cpu_ms_per_call"])
    assert floor["cpu_vs_floor"] == 1.0 and floor["throughput_vs_floor"] == 1.0


def _check_train(section):
    assert [r["conv"] for r in section["rows"]] == ["builtin", "explicit"]
    for row in section["rows"]:
        assert 0 <= row["test_accuracy"] <= 1 and row["epochs"] == 1
        assert row["wall_seconds"] > 0 and row["train_examples_per_second"] > 0
    assert "wall_ratio" in section["rows"][1]
    (jit,) = section["jit"]  # tiny: the built-in conv's auto choice against the other one
    assert jit["conv"] == "builtin" and jit["auto_jit"] == section["rows"][0]["jit_compiled"]
    assert jit["ratio"] == pytest.approx(jit["auto_examples_per_second"]
                                         / jit["other_examples_per_second"])
    assert jit["auto_wall_seconds"] == section["rows"][0]["wall_seconds"]
    assert jit["wall_ratio"] == pytest.approx(jit["other_wall_seconds"] / jit["auto_wall_seconds"])


def _check_data(section):
    (row,) = section["rows"]
    assert row["model"] == "lenet" and row["image_size"] == 28
    assert row["pipeline_images_per_s"] > 0 and row["step_examples_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["pipeline_images_per_s"] / row["step_examples_per_s"])
    assert row["met"] == (row["ratio"] >= row["target"])
    (memory,) = section["memory"]
    assert memory["images_x"] > 3 * memory["images"]  # 4 links of each file, 10 % held out
    assert memory["peak_mib"] > 50 and memory["peak_x_mib"] >= memory["peak_mib"]
    assert memory["ratio"] == pytest.approx(memory["peak_x_mib"] / memory["peak_mib"])


@pytest.mark.parametrize("section, check", [
    ("conv", _check_conv),
    ("torch", _check_torch),
    pytest.param("user", _check_user, marks=pytest.mark.slow),
    pytest.param("inference", _check_inference, marks=pytest.mark.slow),
    pytest.param("serving", _check_serving, marks=pytest.mark.slow),
    pytest.param("train", _check_train, marks=pytest.mark.slow),
    pytest.param("data", _check_data, marks=pytest.mark.slow),
])
def test_section_tiny_writes_json(tmp_path, section, check):
    out = tmp_path / f"{section}.json"
    proc = _cli("--section", section, "--size", "tiny", "--repeats", "2", "--backends",
                "current", "--quiet", "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"== {section}" in proc.stdout
    results = json.loads(out.read_text())
    assert results["size"] == "tiny" and results["repeats"] == 2
    assert results["backends"] == [bench.current_backend()]
    assert {"cpu", "cores", "date", "versions", "load_average"} <= set(results["machine"])
    data = results["sections"][section]
    assert "error" not in data and not data.get("errors"), data
    assert data["seconds"] > 0
    check(data)
