"""Plain-text tables of ``kcnn-bench`` results."""
from __future__ import annotations


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, list):  # e.g. one figure per child process
        return " ".join(_cell(v) for v in value)
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


