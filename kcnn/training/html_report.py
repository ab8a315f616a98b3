"""``report.html``: one self-contained page per run folder (images inlined, no external files).

It shows the figures of ``report.json`` (accuracy, loss, throughput, device, ONNX check), the
training curves, the confusion matrix, the first conv layer's kernels and the model's layer table,
so a run can be read (or mailed) as one file.
"""
from __future__ import annotations

import base64
import html
import os

from kcnn.files import atomic_write_text

FIGURES = (("curves.png", "Training curves"), ("confusion.png", "Confusion matrix (test set)"),
           ("kernels.png", "First conv layer's kernels"))
_HEADLINE = (("test_accuracy", "test accuracy", "{:.4f}"), ("train_accuracy", "train accuracy", "{:.4f}"),
             ("test_loss", "test loss", "{:.4f}"), ("train_loss", "train loss", "{:.4f}"),
             ("val_accuracy", "validation accuracy", "{:.4f}"),
             ("train_examples_per_second", "train examples/s", "{:,.0f}"),
             ("epochs", "epochs", "{}"), ("seconds", "wall time (s)", "{:.1f}"),
             ("backend", "backend", "{}"), ("device", "device", "{}"),
             ("dtype_policy", "dtype policy", "{}"), ("conv", "conv", "{}"),
             ("dataset", "data set", "{}"))
_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:60rem;padding:0 1rem;
color:#1d1d1f}h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}table{border-collapse:collapse}
td,th{padding:.2rem .7rem;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;
font-variant-numeric:tabular-nums}img{max-width:100%;height:auto}"""


def _image(path):
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(os.path.basename(path))}">'


def _figures_table(report):
    rows = []
    for key, label, fmt in _HEADLINE:
        if report.get(key) is not None:
            try:
                value = fmt.format(report[key])
            except (TypeError, ValueError):
                value = str(report[key])
            rows.append(f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>")
    onnx = report.get("onnx") or {}
    for key in ("max_abs_diff", "top1_agreement"):
        if key in onnx:
            rows.append(f"<tr><th>ONNX {key.replace('_', ' ')}</th><td>{onnx[key]:.3g}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _layer_table(summary):
    head = "<tr><th>layer (type)</th><th>output shape</th><th>params</th><th>MACs</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r.name)} ({html.escape(r.kind)})</td>"
        f"<td>{html.escape(str(tuple(r.output_shape)) if r.output_shape else '?')}</td>"
        f'<td class="n">{r.params:,}</td><td class="n">{r.macs:,}</td></tr>' for r in summary.rows)
    total = (f"<p>{summary.total_params:,} parameters, {summary.total_macs:,} MACs per example "
             f"(input {tuple(summary.input_shape)}).</p>")
    return f"<table>{head}{body}</table>{total}"


def write_html_report(out, report, *, summary=None, title=None):
    """Write ``out/report.html`` (atomically) and return its path.

    Args:
        out: the run folder; its ``curves.png``, ``confusion.png`` and ``kernels.png`` are inlined
            when present.
        report: the run's report (the content of ``report.json``).
        summary: a :class:`kcnn.models.summary.ModelSummary` for the layer table, or None.
        title: the page title (default: model and data set from the report).
    """
    title = title or f"{report.get('model', 'model')} on {report.get('dataset', 'data')}"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _figures_table(report)]
    for name, heading in FIGURES:
        path = os.path.join(out, name)
        if os.path.isfile(path):
            parts.append(f"<h2>{html.escape(heading)}</h2>{_image(path)}")
    if summary is not None:
        parts.append(f"<h2>Layers</h2>{_layer_table(summary)}")
    parts.append("</body></html>")
    return atomic_write_text(os.path.join(out, "report.html"), "\n".join(parts))
