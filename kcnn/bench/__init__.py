"""Benchmarks behind ``kcnn-bench``: every figure is a ratio against a reference measured in the
same run (and, where the backend allows it, the same process), after warm-up, as the median of
several repetitions.

Sections (``runner.SECTIONS``: one module each, with a ``run(ctx) -> dict``):

``conv``       ``CrossCorrelation2D`` vs ``Conv2D``: training-step and forward time, peak RSS,
               per backend, LeNet and a VGG block (``conv_floor``: the matmul floor).
``user``       the explicit layers in a plain user script at Keras's defaults (``Sequential``,
               ``compile()``, ``fit`` on NumPy): LeNet time, VGG-block peak RSS, bf16 vs float32.
``torch``      LeNet training throughput of kcnn's training path vs a plain PyTorch eager LeNet.
``inference``  onnxruntime vs ``model.predict`` vs a direct model call: batch-1 latency and
               batch-256 throughput for LeNet, AlexNet and VGG-11.
``serving``    ``kcnn-serve`` under 32 concurrent clients on loopback.
``train``      ``kcnn-train``'s default run: accuracy and wall time, explicit vs builtin.
``data``       the ``folder:DIR`` pipeline's images/s vs the training step's examples/s, and
               its peak RSS as the folder grows.

Example::

    from kcnn import bench
    results = bench.run(["conv"], size="tiny", backends=["torch"])
    print(bench.format_table(results))
"""
from kcnn.bench.common import (BACKENDS, SIZES, BenchError, Context, console_command, current_backend,
                               machine_facts, median, peak_rss_mib, percentile, run_child, time_calls)
from kcnn.bench.runner import SECTIONS, run, write_results
from kcnn.bench.tables import format_table

__all__ = ["SECTIONS", "SIZES", "BACKENDS", "BenchError", "Context", "run", "run_child",
           "machine_facts", "format_table", "write_results", "time_calls", "median",
           "percentile", "peak_rss_mib", "current_backend", "console_command"]
