"""kcnn-export killed with SIGKILL, or running next to another export: no staging folder outlives
its writer past the next export, and no export removes a live one's."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import pytest

from kcnn.export import OnnxPredictor

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path_factory.mktemp("staging") / "model.keras"
    model.save(path)
    return path


def start_export(keras_file, out):
    script = pathlib.Path(sys.executable).parent / "kcnn-export"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kcnn.cli.export"]
    return subprocess.Popen(command + [str(keras_file), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def freeze_when(folder, waits, timeout=240):
    """SIGSTOP each process once its pattern (process id filled in) matches under ``folder``;
    return the matched paths, in order."""
    found = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(waits):
        for proc, pattern in waits:
            if proc in found:
                continue
            match = sorted(folder.glob(pattern.format(pid=proc.pid)))
            if match:
                proc.send_signal(signal.SIGSTOP)
                found[proc] = match[0]
            else:
                assert proc.poll() is None, f"{pattern} never appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, f"not all of {waits} appeared within {timeout} s"
        time.sleep(0.02)
    return [found[proc] for proc, _ in waits]


def kill(proc):
    proc.send_signal(signal.SIGKILL)  # also ends a stopped process
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def finish(proc):
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return stdout


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_killed_exports_leave_nothing_once_the_next_export_finishes(keras_file, tmp_path):
    out = tmp_path / "model.onnx"
    staging = ".model.onnx.staging-{pid}-*"
    # Started together so that their imports overlap: one is killed before its staging folder
    # appears, one once export_onnx's own folder appears inside its staging folder, and one is
    # frozen (SIGSTOP) once its staging folder appears: a live export to the same file. (The
    # helper's tests kill a writer holding a bare staging folder.)
    procs = [start_export(keras_file, out) for _ in range(3)]
    early, nested, live = procs
    try:
        time.sleep(0.5)
        assert not list(tmp_path.glob(staging.format(pid=early.pid)))
        kill(early)
        # Frozen at once so that neither the export nor its cleanup moves on meanwhile.
        folders = freeze_when(tmp_path, [(nested, staging + "/.model.onnx.tmp-{pid}-*"),
                                         (live, staging)])
        kill(nested)
        assert all(folder.is_dir() for folder in folders) and not out.exists()

        stdout = finish(start_export(keras_file, out))  # the next export
        assert f"wrote {out}" in stdout
        assert listing(tmp_path) == [folders[1].name, "model.onnx"]  # the live one's is kept
        live.send_signal(signal.SIGCONT)
        assert f"wrote {out}" in finish(live)  # its staging folder was still there
        assert listing(tmp_path) == ["model.onnx"]
        assert OnnxPredictor(out, ["CPUExecutionProvider"]).num_classes == 3
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill(proc)
