"""kcnn-bench --section gpu: the selection logic (no GPU needed) and the section on this machine."""
import json
import subprocess
import sys

import pytest

from kcnn.bench import gpu
from kcnn.bench.common import current_backend


def test_plan_without_a_gpu_skips_and_says_why():
    chosen = gpu.plan("torch", [], ["CPUExecutionProvider"])
    assert chosen["fits"] == [] and chosen["onnx_provider"] is None
    assert chosen["skipped"] == "no GPU visible to the torch backend"


@pytest.mark.parametrize("gpus, mixed", [([(9, 0)], "mixed_bfloat16"), ([(8, 0), (8, 6)],
                                         "mixed_bfloat16"), ([(7, 5)], "mixed_float16"),
                                         ([(8, 0), (7, 0)], "mixed_float16")])
def test_plan_on_gpus_fits_every_model_conv_and_precision(gpus, mixed):
    chosen = gpu.plan("jax", gpus, ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen["skipped"] is None and chosen["onnx_provider"] == gpu.CUDA
    assert set(chosen["fits"]) == {(m, c, p) for m in ("lenet", "vgg11")
                                   for c in ("builtin", "explicit") for p in ("float32", mixed)}


def test_plan_without_cuda_in_onnxruntime_fits_only():
    chosen = gpu.plan("tensorflow", [(8, 0)], ["CPUExecutionProvider"])
    assert chosen["fits"] and chosen["onnx_provider"] is None
    assert "no CUDAExecutionProvider" in chosen["onnx_skipped"]
    with pytest.raises(ValueError, match="size"):
        gpu.plan("tensorflow", [(8, 0)], [], size="huge")


def test_explicit_vs_builtin_ratios():
    rows = [{"model": "lenet", "conv": "builtin", "policy": "float32", "examples_per_s": 100.0},
            {"model": "lenet", "conv": "explicit", "policy": "float32", "examples_per_s": 80.0}]
    gpu._ratios(rows, "examples_per_s", ("model", "policy"))
    assert [r["explicit_vs_builtin"] for r in rows] == [1.0, 0.8]


def test_section_on_this_machine(tmp_path):
    """The section runs as a user would; with no GPU (CI) it skips each backend with the reason."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "kcnn.cli.bench", "--section", "gpu", "--size",
                           "tiny", "--backends", "current", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    section = json.loads(out.read_text())["sections"]["gpu"]
    assert not section["errors"]
    if section["fits"]:  # a GPU: every planned fit ran on it
        assert all(r["device"] != "cpu" and r["examples_per_s"] > 0 for r in section["fits"])
    else:
        assert section["skipped"][0] == {"backend": current_backend(),
                                         "reason": f"no GPU visible to the {current_backend()} "
                                                   "backend"}
        assert "no GPU visible" in proc.stdout


def test_the_measuring_code_runs_on_the_cpu(tmp_path):
    """The fit and onnxruntime rows the GPU run produces, here on the CPU (code path, not speed)."""
    import keras

    row, model = gpu._fit_row("lenet", "explicit", "mixed_bfloat16", "tiny", repeats=2)
    assert row["policy"] == "mixed_bfloat16" and row["examples_per_s"] > 0
    assert keras.config.dtype_policy().name == "float32"  # restored
    row32, model32 = gpu._fit_row("lenet", "builtin", "float32", "tiny")
    (onnx_row,) = gpu._onnx_rows({("lenet", "builtin"): model32}, "tiny", str(tmp_path),
                                 "CPUExecutionProvider")
    assert onnx_row["provider"] == "CPUExecutionProvider" and onnx_row["images_per_s"] > 0
