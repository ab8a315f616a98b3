"""kcnn.cli.base and every console script: --version, --verbose, one exit-code convention."""
import importlib.metadata
import os
import subprocess
import sys

import pytest

from kcnn.cli import base

SCRIPTS = {"kcnn-train": "kcnn.cli.train", "kcnn-summary": "kcnn.cli.summary",
           "kcnn-bench": "kcnn.cli.bench", "kcnn-export": "kcnn.cli.export",
           "kcnn-predict": "kcnn.cli.predict", "kcnn-serve": "kcnn.cli.serve"}


def _command(script):
    path = os.path.join(os.path.dirname(sys.executable), script)
    return [path] if os.path.exists(path) else [sys.executable, "-m", SCRIPTS[script]]


def _run(script, *args):
    return subprocess.run([*_command(script), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_script_answers_version_verbose_and_bad_flags(script):
    version = _run(script, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"{script} {importlib.metadata.version('kcnn')}"
    bad = _run(script, "--no-such-flag")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"{script}: error: ")
    assert "--verbose" in _run(script, "--help").stdout


def _main(run):
    def build_parser():
        parser = base.Parser("kcnn-test")
        parser.add_argument("--n", type=int, default=0)
        return parser

    return base.entry_point(build_parser, run)


def _raise(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize("run, code, message", [
    (lambda args: None, 0, None),
    (lambda args: 3, 3, None),
    (_raise(ValueError("bad value\nsecond line")), 2, "kcnn-test: error: bad value second line"),
    (_raise(FileNotFoundError("no such file: 'x'")), 2, "kcnn-test: error: no such file: 'x'"),
    (_raise(base.UsageError("wrong")), 2, "kcnn-test: error: wrong"),
    (_raise(base.CommandError("diverged", code=1)), 1, "kcnn-test: error: diverged"),
    (_raise(RuntimeError("boom")), 1, "kcnn-test: error: RuntimeError: boom"),
    (_raise(KeyboardInterrupt()), 130, "kcnn-test: error: interrupted"),
])
def test_entry_point_exit_codes(capsys, run, code, message):
    assert _main(run)([]) == code
    err = capsys.readouterr().err
    assert err == ("" if message is None else message + "\n")


def test_usage_errors_and_tracebacks(capsys):
    assert _main(lambda args: None)(["--n", "x"]) == 2
    assert capsys.readouterr().err == "kcnn-test: error: argument --n: invalid int value: 'x'\n"
    assert _main(_raise(RuntimeError("boom")))(["--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("kcnn-test: error: RuntimeError: boom\n")


def test_native_stderr_is_silenced_python_stderr_is_not():
    code = ("import os, sys; from kcnn.cli.base import native_stderr_silenced\n"
            "with native_stderr_silenced():\n"
            "    os.write(2, b'native line\\n'); print('python line', file=sys.stderr)\n"
            "os.write(2, b'after\\n')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr == "python line\nafter\n"


def test_summary_prints_no_native_log_lines_unless_verbose():
    quiet = _run("kcnn-summary", "lenet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "Total params" in quiet.stdout
