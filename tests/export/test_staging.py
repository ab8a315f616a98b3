"""kcnn.export.staging: staging folders beside a target, and removal of dead writers' folders."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from kcnn.export import staging
from kcnn.export.staging import STALE_SECONDS, remove_dead_staging, staging_dir

HOLDER = r"""
import sys, time
from kcnn.export.staging import staging_dir
with staging_dir(sys.argv[1], "staging") as folder:
    print(folder, flush=True)
    time.sleep(120)
"""


def hidden(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith("."))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_folder(parent, name):
    folder = parent / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"partial")
    return folder


def test_staging_dir_is_locked_beside_the_target_and_removed_after(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with staging_dir(target, "staging") as folder:
        assert folder.parent == target.parent and folder.is_dir()
        assert folder.name.startswith(f".model.onnx.staging-{os.getpid()}-")
        assert staging._NAME.match(folder.name)
        if staging.fcntl is not None:
            assert (folder / staging.LOCK_NAME).is_file()
        (folder / "model.onnx").write_bytes(b"x")
        os.replace(folder / "model.onnx", target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]
    with pytest.raises(RuntimeError, match="boom"):
        with staging_dir(target) as folder:
            (folder / "half.onnx").write_bytes(b"x")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_kind_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"kind must be one of 'staging', 'tmp'; received 'x'"):
        with staging_dir(tmp_path / "a.onnx", "x"):
            pass


@pytest.mark.skipif(staging.fcntl is None, reason="no fcntl: the age rule alone")
def test_a_live_writers_folder_is_kept_and_removed_once_it_is_killed(tmp_path):
    target = tmp_path / "model.onnx"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        theirs = pathlib.Path(child.stdout.readline().strip())
        assert theirs.is_dir() and f"-{child.pid}-" in theirs.name
        assert remove_dead_staging(tmp_path) == []
        with staging_dir(target, "staging") as mine:  # a concurrent writer to the same file
            assert theirs.is_dir()
            assert remove_dead_staging(tmp_path) == []  # nor is this process's own live one
            assert mine.is_dir()
        assert hidden(tmp_path) == [theirs.name]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert remove_dead_staging(tmp_path) == [theirs]
    assert hidden(tmp_path) == []


@pytest.mark.skipif(staging.fcntl is None, reason="no fcntl: the age rule alone")
def test_a_killed_writers_folder_goes_at_the_next_write_to_any_file_of_the_folder(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "a.onnx")],
                             stdout=subprocess.PIPE, text=True)
    theirs = pathlib.Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    child.stdout.close()
    assert (theirs / staging.LOCK_NAME).is_file()  # the lock file stays; its lock does not
    with staging_dir(tmp_path / "b.onnx"):
        assert not theirs.exists()


@pytest.mark.skipif(staging.fcntl is None, reason="no fcntl: the age rule alone")
def test_unlocked_folders_go_by_pid_then_by_age(tmp_path):
    # Left by a writer killed between creating its folder and locking it.
    dead = make_folder(tmp_path, f".m.onnx.tmp-{dead_pid()}-0123456789ab")
    alive = make_folder(tmp_path, f".m.onnx.staging-{os.getpid()}-0123456789ab")
    recycled = make_folder(tmp_path, f".m.onnx.staging-{os.getppid()}-0123456789ab")
    old = recycled.stat().st_mtime - STALE_SECONDS - 60
    os.utime(recycled, (old, old))
    assert sorted(remove_dead_staging(tmp_path)) == sorted([dead, recycled])
    assert hidden(tmp_path) == [alive.name]


def test_only_staging_names_are_touched(tmp_path):
    old = os.path.getmtime(tmp_path) - STALE_SECONDS - 60
    foreign = [make_folder(tmp_path, name) for name in (
        ".m.onnx.tmp-killed", f".m.onnx.cache-{dead_pid()}-0123456789ab", ".git",
        f"m.onnx.tmp-{dead_pid()}-0123456789ab", f".m.onnx.tmp-{dead_pid()}-0123")]
    a_file = tmp_path / f".m.onnx.tmp-{dead_pid()}-0123456789ab"
    a_file.write_bytes(b"not a folder")
    for path in (*foreign, a_file):
        os.utime(path, (old, old))
    assert remove_dead_staging(tmp_path) == []
    assert all(path.exists() for path in (*foreign, a_file))
    assert remove_dead_staging(tmp_path / "missing") == []


def test_without_fcntl_the_age_rule_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "fcntl", None)
    with staging_dir(tmp_path / "m.onnx") as folder:
        assert list(folder.iterdir()) == []  # no lock file
    young = make_folder(tmp_path, f".m.onnx.tmp-{dead_pid()}-0123456789ab")
    old = make_folder(tmp_path, f".m.onnx.tmp-{os.getpid()}-ba9876543210")
    stamp = old.stat().st_mtime - STALE_SECONDS - 60
    os.utime(old, (stamp, stamp))
    assert remove_dead_staging(tmp_path) == [old]
    assert young.exists()
