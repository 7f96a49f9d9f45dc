"""Writing results so that an interrupted or failed run leaves the previous complete result or nothing.

* ``check_destination(flag, text, ...)`` runs before any work: the destination is not "" and not of the
  wrong kind, and its parent exists and takes a file (a real probe: a temporary file created and deleted
  there, which also catches read-only mounts, ``/proc`` and ACLs that ``os.access`` misses). Failures
  are HelixInputError naming the flag, so the CLI exits 2 with one line before anything is measured.
* ``write_atomic(path, text)``: one file, through a temporary file in the same folder, fsynced, then
  ``os.replace``: readers see the old file or the new one, whole.
* ``output_dir(path, command)``: a folder of results, written into ``X.tmp-<pid>`` beside X, then swapped
  in: X is renamed to ``X.old-<pid>``, the new folder to X, the old one removed. Signals are held over
  the swap; only a SIGKILL or power loss in the microseconds between the two renames can split it, and
  then X is missing and the previous complete result is in ``X.old-<pid>``: never a mix. (renameat2's
  exchange would close that window; Python lacks it.) On any exception or signal the temporary folder
  is removed. What a killed run left (``X.tmp-<pid>``, ``X.old-<pid>``, a file's temporary) is cleared
  at the next write to X, the previous result put back if the kill split the swap (helix.leftovers).
  Each result carries ``.helix-output.json`` (command, files), so a later run replaces only
  a folder known to hold an earlier result; a folder holding anything else is refused, never deleted.

Signals: ``handle_signals()`` (entered by ``helix.cli.main``) turns SIGINT into KeyboardInterrupt and
SIGTERM into ``Terminated``, so both run the same cleanup. It records each signal, so an interrupt that
a library swallowed (raised inside a ``__del__`` or a callback) still stops the result being committed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from helix import leftovers
from helix.errors import HelixInputError

MANIFEST = ".helix-output.json"
RESULT_SUFFIXES = (".csv", ".png", ".md", ".html", ".json")  # what a result written before the manifest held


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt (not an Exception: nothing swallows it)."""


class _State:
    def __init__(self):
        self.signum: int | None = None  # the first SIGINT / SIGTERM received
        self.hold, self.pending, self.raising = 0, False, True  # hold > 0: recorded, raised when it ends
        self.dest: str | None = None  # the destination as the user wrote it; tmp: our temporary folder
        self.existed = self.done = False  # done: the new result is in place
        self.tmp: str | None = None


_s = _State()


def _raise(signum: int):
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt


def _handler(signum, frame):
    _s.signum = signum if _s.signum is None else _s.signum
    if _s.hold or not _s.raising:
        _s.pending = _s.raising
        return
    _raise(signum)


def _late(signum, frame):
    """A signal after the command finished, while the interpreter exits: the files are complete or gone
    by now; say so in one line and leave with 128 + signum instead of a traceback from finalization."""
    try:
        sys.stdout.flush()
        os.write(2, f"helix: {interrupted_message()}\n".encode())
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)


@contextmanager
def handle_signals(process_exits: bool = False):
    """SIGINT → KeyboardInterrupt, SIGTERM → Terminated while inside (an inherited SIG_IGN is kept).
    On the way out the previous handlers come back, or, when the process exits next (the ``helix``
    program itself), ones that end it at once with one line, until atexit, from where the signals are
    ignored (the result is complete; Python's teardown would otherwise die of them with no line).
    Resets the recorded signal and destination."""
    global _s
    _s = _State()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, _handler)
    try:
        yield
    finally:
        _s.signum, _s.pending, _s.raising = None, False, True  # a later command in this process starts clean
        for sig, h in previous.items():
            signal.signal(sig, _late if process_exits else h)
        for sig in previous if process_exits else ():  # teardown: SIG_IGN, which Python leaves in place
            atexit.register(signal.signal, sig, signal.SIG_IGN)


@contextmanager
def held_signals():
    """SIGINT / SIGTERM received inside are raised at its end (not at all if the body raised)."""
    _s.hold += 1
    try:
        yield
    finally:
        _s.hold -= 1
    if not _s.hold and _s.pending:
        _s.pending = False
        _raise(_s.signum)


def stop_raising() -> None:
    """From now on signals are only recorded: the CLI is already reporting an interrupt or an error."""
    _s.raising = False


def received() -> int | None:
    """The first SIGINT / SIGTERM received since handle_signals() began, even if it was swallowed."""
    return _s.signum


def _state_words() -> str:
    if _s.done:
        return f"{_s.dest} was already written in full"
    return f"{_s.dest} kept as it was" if _s.existed else f"nothing written to {_s.dest}"


def interrupted_message() -> str:
    return "interrupted" if _s.dest is None else f"interrupted; {_state_words()}"


def failure_message(exc: OSError) -> str:
    """One line for an OSError (a full disk, a vanished folder): the path, the reason, what is on disk."""
    where = exc.filename if exc.filename is not None else _s.dest
    where = str(where) if where is not None else ""
    if _s.tmp and where.startswith(_s.tmp):  # name the user's folder, not our temporary one
        where = str(Path(_s.dest or "") / os.path.relpath(where, _s.tmp))
    reason = exc.strerror or str(exc)
    text = f"cannot write {where}: {reason}" if where else reason
    return text if _s.dest is None or where == "" else f"{text}; {_state_words()}"


def _probe(flag: str, folder: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".helix-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise HelixInputError(flag, f"cannot write in {str(folder)!r} ({exc.strerror or exc})") from None


def _foreign(real: Path, replaces: str) -> list[str]:
    """Entries of an existing folder that are not part of an earlier result of this command."""
    entries = sorted(os.listdir(real))
    if not entries:
        return []
    try:
        listed = set(json.loads((real / MANIFEST).read_text())["files"]) | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):
        if replaces not in entries:
            return entries
        return [e for e in entries if (real / e).is_symlink() or not (real / e).is_file()
                or not e.endswith(RESULT_SUFFIXES)]
    return [e for e in entries if e not in listed]


def check_destination(flag: str, text: str, *, kind: str = "dir", parents: bool = False,
                      replaces: str | None = None, command: str = "helix") -> Path:
    """Check where a command will write, before any work; returns ``Path(text)``.

    kind: "dir" or "file". parents: missing folders above are created later (then the nearest existing
    one must take a file). replaces: for a folder that ``output_dir`` will replace whole, the file that
    marks an earlier result of ``command`` (``summary.json``, ``points.csv``) in folders written before
    the manifest existed; any other content is refused rather than lost.
    """
    if not text.strip():
        raise HelixInputError(flag, "is empty; give a path")
    real = Path(os.path.realpath(text))
    if kind == "dir" and real.exists() and not real.is_dir():
        raise HelixInputError(flag, f"{text!r} exists and is not a directory")
    if kind == "file" and real.is_dir():
        raise HelixInputError(flag, f"{text!r} is a directory")
    parent = real.parent
    while parents and not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise HelixInputError(flag, f"parent directory {str(parent)!r} of {text!r} {what}")
    _probe(flag, parent)
    if replaces is not None and real.exists():
        cwd = os.path.realpath(os.getcwd())
        if cwd == str(real) or cwd.startswith(str(real).rstrip(os.sep) + os.sep):
            raise HelixInputError(flag, f"{text!r} is the current folder or holds it; the result replaces the "
                                        "whole folder: give a new folder")
        if os.path.ismount(real):
            raise HelixInputError(flag, f"{text!r} is a mount point, which cannot be swapped for the new result: "
                                        "give a folder inside it")
        foreign = _foreign(real, replaces)
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise HelixInputError(flag, f"{text!r} holds {foreign[0]!r}{more}, not part of an earlier `{command}` "
                                        "result; the new result replaces the whole folder: move it away or give "
                                        "a new or empty folder")
        _probe(flag, real)  # the old result must be removable
    _s.dest, _s.existed, _s.done = text, real.exists(), False
    return Path(text)


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder (fsynced, mode as for an ordinary file) and
    os.replace it into place: a failure or an interrupt leaves the old file or none, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    leftovers.sweep_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=leftovers.temp_prefix(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def committing():
    """Hold signals over a set of writes (each atomic) so an interrupt cannot split the set; refuse to start
    if an interrupt was already received (and swallowed). Marks the destination written on success."""
    with held_signals():
        if _s.signum is not None:
            _raise(_s.signum)
        yield
        _s.done = True


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, real: Path, command: str) -> None:
    names = sorted(os.listdir(tmp))
    write_atomic(tmp / MANIFEST, json.dumps({"command": command, "files": names}, indent=1) + "\n")
    for root, _, files in os.walk(tmp):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root, directory=True)
    if not os.path.lexists(real):
        os.rename(tmp, real)
    else:
        old = real.with_name(f"{real.name}.old-{os.getpid()}")
        leftovers.remove(old)
        os.rename(real, old)
        try:
            os.rename(tmp, real)
        except BaseException:
            os.rename(old, real)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync(str(real.parent), directory=True)


@contextmanager
def output_dir(path: Path, command: str):
    """Yield a temporary sibling folder to write the whole result into; swap it into place on success,
    remove it on any exception or signal (see the module docstring for the guarantees)."""
    real = Path(os.path.realpath(path))
    tmp = real.with_name(f"{real.name}.tmp-{os.getpid()}")
    if _s.dest is None:
        _s.dest, _s.existed = str(path), real.exists()
    _s.tmp = str(tmp)
    try:
        with held_signals():
            if leftovers.sweep_folder(real):  # what killed runs left; the previous result put back
                _s.existed = True
            leftovers.remove(tmp)  # only a dead run with our pid could have left it
            tmp.mkdir()
        yield tmp
        with committing():
            _commit(tmp, real, command)
    except BaseException:
        with held_signals():
            leftovers.remove(tmp)
        raise
