"""The README's Python examples run as written (so they never rot)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_layout_lists_every_package_folder():
    root = README.parent
    layout = README.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    folders = {p.parent for p in root.glob("kcnn/**/__init__.py")}
    folders |= {p.parent for p in root.glob("export/**/__init__.py")} | {root / "layers"}
    for folder in sorted(folders):
        if folder.name in ("kcnn",):
            continue
        assert f"{folder.name}/" in layout, f"README layout misses {folder.relative_to(root)}"
    for folder in ("tests/", ".ci/", "static/"):
        assert folder in layout
