"""helix.leftovers: what a SIGKILLed write left beside its destination is cleared at the next write, and a
swap the kill split is put back; nothing of a live process, and nothing not named as ours, is touched."""

import json
import os
import signal
import subprocess
import sys

import pytest

from helix import leftovers, outputs
from helix.cli import main


@pytest.fixture(scope="module")
def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not leftovers.pid_alive(p.pid)
    return p.pid


@pytest.fixture
def live_pid():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p.pid
    p.kill()
    p.wait()


def result(path, text, command="helix sweep"):
    path.mkdir()
    (path / "points.csv").write_text(text)
    (path / outputs.MANIFEST).write_text(json.dumps({"command": command, "files": ["points.csv"]}))


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_pid_alive():
    assert leftovers.pid_alive(os.getpid()) and leftovers.pid_alive(os.getppid())
    assert not leftovers.pid_alive(0) and not leftovers.pid_alive(-1) and not leftovers.pid_alive(2**40)


def test_a_killed_runs_folders_are_removed_at_the_next_write(tmp_path, dead_pid):
    out = tmp_path / "out"
    result(out, "old\n")
    (tmp_path / f"out.tmp-{dead_pid}").mkdir()
    (tmp_path / f"out.tmp-{dead_pid}" / "points.csv").write_text("half")
    result(tmp_path / f"out.old-{dead_pid}", "older\n")  # the swap had finished: out is newer
    with outputs.output_dir(out, "helix sweep") as tmp:
        (tmp / "points.csv").write_text("new\n")
    assert names(tmp_path) == ["out"]
    assert (out / "points.csv").read_text() == "new\n"


def test_a_swap_split_by_a_kill_puts_the_previous_result_back(tmp_path, dead_pid, capsys):
    out = tmp_path / "out"
    result(tmp_path / f"out.old-{dead_pid}", "previous\n")  # killed between the two renames: out missing
    outputs.check_destination("--out", str(out), replaces="points.csv", command="helix sweep")
    with pytest.raises(KeyboardInterrupt):
        with outputs.output_dir(out, "helix sweep") as tmp:
            (tmp / "points.csv").write_text("cut short")
            raise KeyboardInterrupt
    assert names(tmp_path) == ["out"]
    assert (out / "points.csv").read_text() == "previous\n"
    assert outputs.interrupted_message() == f"interrupted; {out} kept as it was"


def test_through_the_cli_the_stale_folders_go_and_the_result_is_whole(tmp_path, dead_pid, capsys):
    out = tmp_path / "out"
    (tmp_path / f"out.tmp-{dead_pid}").mkdir()
    (tmp_path / f"out.tmp-{dead_pid}" / "points.csv").write_text("a,b\n1,")
    result(tmp_path / f"out.old-{dead_pid}", "previous\n")
    argv = ["sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert names(tmp_path) == ["out"]
    rows = (out / "points.csv").read_text().splitlines()
    assert len(rows) > 10 and rows[0] != "previous"  # the new sweep's points, not the restored folder's
    assert json.loads((out / outputs.MANIFEST).read_text())["command"] == "helix sweep"


def test_a_live_process_and_foreign_names_are_left_alone(tmp_path, live_pid, dead_pid):
    out = tmp_path / "out"
    keep = [f"out.tmp-{live_pid}", f"out.old-{live_pid}", f"out.tmp-{dead_pid}x", f"out.old-{dead_pid}.bak",
            f"other.tmp-{dead_pid}", "out.tmp-", f".out.tmp-{dead_pid}"]
    for name in keep:
        (tmp_path / name).mkdir()
    with outputs.output_dir(out, "helix sweep") as tmp:
        (tmp / "points.csv").write_text("new\n")
    assert names(tmp_path) == sorted(keep + ["out"])


def test_write_atomic_clears_a_killed_writes_temporary_files(tmp_path, dead_pid, live_pid):
    target = tmp_path / "profile.yaml"
    stale = tmp_path / f".profile.yaml.tmp-{dead_pid}-abc123"
    live = tmp_path / f".profile.yaml.tmp-{live_pid}-def456"
    other = tmp_path / f".other.yaml.tmp-{dead_pid}-abc123"
    for p in (stale, live, other):
        p.write_text("half")
    outputs.write_atomic(target, "name: x\n")
    assert names(tmp_path) == sorted([live.name, other.name, "profile.yaml"])
    assert target.read_text() == "name: x\n"


def test_a_sigkilled_write_is_cleared_by_the_next(tmp_path):
    """The real thing: a writer killed inside output_dir leaves its temporary folder; the next write clears it."""
    out = tmp_path / "out"
    code = ("import os, signal, sys; from pathlib import Path; from helix import outputs\n"
            f"with outputs.output_dir(Path({str(out)!r}), 'helix sweep') as tmp:\n"
            "    (tmp / 'points.csv').write_text('half'); os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.Popen([sys.executable, "-c", code])
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert names(tmp_path) == [f"out.tmp-{p.pid}"]
    with outputs.output_dir(out, "helix sweep") as tmp:
        (tmp / "points.csv").write_text("new\n")
    assert names(tmp_path) == ["out"]
