"""What a killed write left beside its destination, cleared at the next write to the same destination.

helix.outputs builds a result folder X in ``X.tmp-<pid>`` and swaps the previous result out through
``X.old-<pid>``, and writes a single file through ``.<name>.tmp-<pid>-<random>`` in its folder. A
SIGKILL (or power loss) leaves those behind, named after a process that no longer exists. Before it
writes, helix.outputs calls:

* ``sweep_folder(X)``: every ``X.tmp-<pid>`` folder of a dead pid is removed (a half-built result).
  An ``X.old-<pid>`` folder of a dead pid is the previous result moved aside for the swap: if X
  exists the swap had finished (X is newer) and it is removed; if X is missing the kill fell between
  the two renames, and the newest such folder is renamed back to X (returns True), the others
  removed.
* ``sweep_files(path)``: every ``.<name>.tmp-<pid>-*`` file of a dead pid beside ``path`` is removed.

A pid that is alive (another run writing the same destination now, or the pid reused) is left alone,
and so is anything whose name does not follow these patterns exactly.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (ours counts as alive)."""
    if pid <= 0:
        return False  # never a process of ours; os.kill(0, ...) would mean our process group
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, OSError):  # not a valid pid at all
        return False
    return True


def remove(path: Path) -> None:
    """Remove a file, link or folder tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _dead(folder: Path, pattern: re.Pattern) -> list[Path]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        m = pattern.fullmatch(name)
        if m and not pid_alive(int(m.group(1))):
            found.append(folder / name)
    return found


def sweep_folder(real: Path) -> bool:
    """Clear the stale siblings of result folder ``real`` (an absolute, resolved path); True when the
    previous result was found moved aside and put back in place as ``real``."""
    base = re.escape(real.name)
    for tmp in _dead(real.parent, re.compile(base + r"\.tmp-(\d+)")):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
    olds = [p for p in _dead(real.parent, re.compile(base + r"\.old-(\d+)")) if p.is_dir() and not p.is_symlink()]
    restored = False
    if not os.path.lexists(real):
        if olds:
            newest = max(olds, key=lambda p: p.stat().st_mtime)
            os.rename(newest, real)
            olds.remove(newest)
            restored = True
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
    return restored


def sweep_files(path: Path) -> None:
    """Remove the temporary files a killed ``write_atomic(path, ...)`` left beside ``path``."""
    for tmp in _dead(path.parent, re.compile(re.escape(f".{path.name}.tmp-") + r"(\d+)-[^/]*")):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)


def temp_prefix(path: Path) -> str:
    """The prefix of write_atomic's temporary file for ``path`` (sweep_files finds it by its pid)."""
    return f".{path.name}.tmp-{os.getpid()}-"
