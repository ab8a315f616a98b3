"""The one parser base and the one error path of every kcnn console script.

Every command is a parser factory plus a ``run(args)`` function, joined by :func:`entry_point`::

    def build_parser():
        parser = Parser("kcnn-thing", description="...")   # --version and --verbose included
        parser.add_argument(...)
        return parser

    def run(args):          # returns None/0 or an exit code; raises for errors
        ...

    main = entry_point(build_parser, run)

Exit codes (the same for every command):

* 0 — done.
* 2 — bad usage or bad input: :class:`UsageError` (argparse errors included), ``ValueError``
  (the library's bad-input errors are ValueError subclasses), ``FileNotFoundError``,
  ``IsADirectoryError``, ``NotADirectoryError``, ``PermissionError``. One line
  ``prog: error: message`` on stderr, no traceback.
* 1 — an unexpected failure: one line ``prog: error: Type: message``; ``--verbose`` adds the
  traceback. :class:`CommandError` ends a command with a code and message of its choosing.
* 130 — Ctrl-C (``prog: error: interrupted``).

Without ``--verbose`` the native libraries' own log lines (TensorFlow, CUDA, onnxruntime, XLA
write them straight to file descriptor 2) are dropped while the command runs; Python's
``sys.stderr`` keeps writing to the real stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import io
import os
import sys
import traceback

#: Exceptions that mean "the user asked for something that cannot be done": exit 2.
BAD_INPUT = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
             PermissionError)


class CommandError(Exception):
    """Ends a command with exit ``code`` and one line ``prog: error: message``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class UsageError(CommandError):
    """Bad command line or bad input: exit 2 with one line."""

    def __init__(self, message: str):
        super().__init__(message, code=2)


def package_version() -> str:
    """The installed kcnn version (pyproject's ``version``: the one source of truth)."""
    try:
        return importlib.metadata.version("kcnn")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``--version`` and ``--verbose``, whose errors raise
    :class:`UsageError` (one line, exit 2) instead of printing the usage block."""

    def __init__(self, prog: str, **kwargs):
        super().__init__(prog=prog, **kwargs)
        self.add_argument("--version", action="version", version=f"{prog} {package_version()}",
                          help="print the installed version and exit")
        self.add_argument("--verbose", action="store_true",
                          help="show native libraries' log lines (TensorFlow, CUDA, onnxruntime) "
                               "and tracebacks of unexpected errors")

    def error(self, message):
        """Raise :class:`UsageError` (argparse calls this for every bad argument)."""
        raise UsageError(message)


def one_line(message) -> str:
    """``message`` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())


@contextlib.contextmanager
def native_stderr_silenced():
    """Drop what native libraries write to file descriptor 2, keep Python's ``sys.stderr``.

    TensorFlow's oneDNN/CUDA banners and ``cuInit`` errors ignore ``TF_CPP_MIN_LOG_LEVEL`` (some
    are written before it is read). File descriptor 2 points at ``/dev/null`` inside the block;
    ``sys.stderr``, when it is the process's real stderr, is re-pointed at a duplicate of the
    original descriptor, so Python-level messages (warnings, uvicorn's log, progress lines) still
    show. Child processes inherit the silenced descriptor 2.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    previous = sys.stderr
    replacement = None
    try:
        if _writes_to_fd2(previous):
            replacement = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0),
                                           encoding=getattr(previous, "encoding", None) or "utf-8",
                                           errors="backslashreplace", line_buffering=True,
                                           write_through=True)
            sys.stderr = replacement
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if replacement is not None:
            if sys.stderr is replacement:
                sys.stderr = previous
            replacement.close()


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # pytest's capsys and other in-memory streams
        return False


def _report(prog: str, message) -> None:
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)


def _run_quietly(run, args):
    if getattr(args, "verbose", False):
        return run(args)
    # C++ log level of TensorFlow/XLA, read when the backend loads (children inherit it too).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        return run(args)


def entry_point(build_parser, run):
    """Join a parser factory and ``run(args) -> int | None`` into ``main(argv=None) -> int``,
    the console-script function, with the module's exit-code convention."""

    @functools.wraps(run)
    def main(argv=None) -> int:
        parser = build_parser()
        prog, verbose = parser.prog, False
        try:
            args = parser.parse_args(argv)
            verbose = bool(getattr(args, "verbose", False))
            code = _run_quietly(run, args)
        except CommandError as err:
            _report(prog, err)
            return err.code
        except BAD_INPUT as err:
            _report(prog, err)
            return 2
        except KeyboardInterrupt:
            _report(prog, "interrupted")
            return 130
        except Exception as err:  # noqa: BLE001 - the one place unexpected errors are reported
            if verbose:
                traceback.print_exc()
            _report(prog, f"{type(err).__name__}: {err}".splitlines()[0] if str(err)
                    else type(err).__name__)
            return 1
        return 0 if code is None else int(code)

    main.__doc__ = f"``{build_parser().prog}`` console entry point; returns the exit code."
    return main
