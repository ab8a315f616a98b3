"""Staging folders beside a file being written, and removal of those a killed writer left behind.

Every writer of kcnn (``export_onnx``, the explain file, quantization, the Triton repository,
``kcnn-export``, the run-folder files) builds its output in a hidden folder beside the target,
``.{name}.{kind}-{pid}-{random}``, and renames the finished file into place: a reader never sees
half a file. A writer killed with SIGKILL (or by a power cut) cannot remove its folder, so each
writer first removes, in the folder it writes to, every staging folder whose writer is dead
(:func:`remove_dead_staging`) and never one whose writer still runs.

How a dead writer is told from a live one: the writer holds an exclusive ``fcntl.flock`` on a
lock file inside its folder for as long as the folder exists. The kernel releases that lock when
the process ends, however it ends, so a folder whose lock can be taken has a dead writer. A
lock rather than the process id alone, because pids are recycled (a dead writer's pid may name
an unrelated live process) and a killed but unreaped process still answers ``kill(pid, 0)``.
``flock`` rather than ``fcntl``/``lockf`` record locks, because a ``flock`` lock belongs to the
open file: another thread of the same process also sees the folder as locked. The lock file
appears already locked (it is locked under a temporary name, then renamed), so a cleaner never
takes the lock of a writer that has not yet locked it.

A folder without a lock file was made by a writer killed in the instant between creating the
folder and locking it (or between removing its lock file and the folder), or on a file system
without ``flock``: it is removed once the pid in its name names no live process, or once it is
older than :data:`STALE_SECONDS` (the pid may have been recycled). Without ``fcntl``
(Windows) no lock is taken and the age rule alone applies.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import shutil
import time

try:
    import fcntl
except ImportError:  # Windows: the age rule alone
    fcntl = None

__all__ = ["KINDS", "STALE_SECONDS", "staging_dir", "remove_dead_staging"]

KINDS = ("staging", "tmp")
# Age after which a staging folder without a held lock is removed whatever its pid says.
STALE_SECONDS = 3600
LOCK_NAME = ".kcnn-writer.lock"

# ".{name}.{kind}-{pid}-{12 hex}": only names of this exact form are ever removed.
_NAME = re.compile(r"^\..+\.(?:staging|tmp)-(?P<pid>\d+)-[0-9a-f]{12}$")


@contextlib.contextmanager
def staging_dir(target, kind="tmp"):
    """A fresh, locked, hidden folder beside ``target`` (``.{name}.{kind}-{pid}-{random}``).

    First removes the folders of dead writers beside ``target`` (:func:`remove_dead_staging`).
    Yields the folder as a ``pathlib.Path``; on exit it is removed with whatever is still in it,
    so the caller ``os.replace``s its finished file out of it before leaving the block.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; received {kind!r}.")
    target = pathlib.Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(parent)
    folder = _make_folder(parent, f".{target.name}.{kind}-{os.getpid()}-")
    try:
        lock = _lock_new(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield folder
    finally:
        # The lock file goes last and the lock is released after it: until then the folder
        # is seen as live.
        for entry in list(folder.iterdir()) if folder.is_dir() else ():
            if entry.name != LOCK_NAME:
                _remove(entry)
        shutil.rmtree(folder, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def remove_dead_staging(folder) -> list:
    """Remove, in ``folder``, the staging folders whose writer is dead; return their paths.

    A folder whose writer is alive (its lock is held, even by this process) is kept. See the
    module docstring for the rules; folders of any target in ``folder`` are considered, so an
    export to ``a.onnx`` also clears what a killed export to ``b.onnx`` left.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        try:
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            if _remove_if_dead(pathlib.Path(entry.path), match["pid"]):
                removed.append(pathlib.Path(entry.path))
        except OSError:  # removed meanwhile by another cleaner, or not ours to read
            continue
    return removed


def _make_folder(parent, prefix):
    for _ in range(100):
        folder = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"could not create a unique staging folder {prefix}* in {parent}")


def _lock_new(folder):
    """The open, locked lock file of ``folder`` (None without flock), renamed in once locked."""
    if fcntl is None:
        return None
    pending = folder / f"{LOCK_NAME}.new"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)  # not inherited (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a file system without flock: the pid and age rules apply
        os.close(fd)
        os.unlink(pending)
        return None
    try:
        os.rename(pending, folder / LOCK_NAME)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_if_dead(path, pid):
    if fcntl is not None:
        try:
            fd = os.open(path / LOCK_NAME, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False  # its writer holds the lock: alive
            except OSError:
                os.close(fd)  # no flock here: fall through to the pid and age rules
            else:
                try:  # holding the dead writer's lock, so no other cleaner removes it meanwhile
                    shutil.rmtree(path, ignore_errors=True)
                finally:
                    os.close(fd)
                return True
        if not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            return True
    if time.time() - path.stat().st_mtime > STALE_SECONDS:
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
