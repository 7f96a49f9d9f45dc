"""helix.outputs: a result folder is swapped in whole or not at all; destinations are checked before any
work; SIGINT / SIGTERM / a full disk end a command with one line, the previous result kept."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helix import outputs
from helix.cli import main
from helix.errors import HelixInputError


def previous_result(path, command="helix sweep"):
    """A complete earlier result, as output_dir leaves one."""
    path.mkdir()
    (path / "points.csv").write_text("old,points\n")
    (path / "frontier.png").write_bytes(b"old png")
    (path / outputs.MANIFEST).write_text(json.dumps({"command": command, "files": ["frontier.png", "points.csv"]}))
    return snapshot(path)


def snapshot(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# ---------------------------------------------------------------- the folder swap


@pytest.mark.parametrize("exc", [KeyboardInterrupt, outputs.Terminated, OSError, ValueError])
def test_body_raising_keeps_the_previous_result_and_no_temporary(tmp_path, exc):
    out = tmp_path / "out"
    before = previous_result(out)
    with pytest.raises(exc):
        with outputs.output_dir(out, "helix sweep") as tmp:
            assert tmp.parent == out.parent and tmp.name == f"out.tmp-{os.getpid()}"
            (tmp / "points.csv").write_text("new, but cut short")
            raise exc()
    assert snapshot(out) == before
    assert siblings(out) == []


def test_body_raising_with_no_previous_result_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with outputs.output_dir(out, "helix sweep") as tmp:
            (tmp / "points.csv").write_text("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    previous_result(out)
    with outputs.output_dir(out, "helix sweep") as tmp:
        (tmp / "points.csv").write_text("new\n")
    assert sorted(p.name for p in out.iterdir()) == [outputs.MANIFEST, "points.csv"]  # the old figure is gone
    assert (out / "points.csv").read_text() == "new\n"
    assert json.loads((out / outputs.MANIFEST).read_text()) == {"command": "helix sweep", "files": ["points.csv"]}
    assert siblings(out) == []
    outputs.check_destination("--out", str(out), replaces="points.csv")  # our own result may be replaced again


def test_folders_holding_other_files_are_refused_not_deleted(tmp_path):
    out = tmp_path / "out"
    previous_result(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(HelixInputError, match="notes.txt"):
        outputs.check_destination("--out", str(out), replaces="points.csv")
    legacy = tmp_path / "legacy"  # written before the manifest: result files only, with the marker file
    legacy.mkdir()
    (legacy / "points.csv").write_text("x")
    (legacy / "frontier.png").write_text("x")
    outputs.check_destination("--out", str(legacy), replaces="points.csv")
    (legacy / "sub").mkdir()
    with pytest.raises(HelixInputError, match="sub"):
        outputs.check_destination("--out", str(legacy), replaces="points.csv")
    with pytest.raises(HelixInputError, match="current folder"):
        outputs.check_destination("--out", ".", replaces="points.csv")


def test_write_atomic_leaves_no_temporary(tmp_path):
    path = tmp_path / "p.yaml"
    outputs.write_atomic(path, "a: 1\n")
    outputs.write_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n" and [p.name for p in tmp_path.iterdir()] == ["p.yaml"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- destinations checked before any work

UNDER_A_FILE = "afile/out"


@pytest.mark.parametrize("argv", [
    ["reproduce", "--quick", "--quiet"],
    ["sweep", "--max-gpus", "2"],
])
@pytest.mark.parametrize("dest", ["", UNDER_A_FILE, "/proc/helix-test-out", "readonly/out"])
def test_unwritable_destination_is_one_line_exit_2_before_any_work(tmp_path, monkeypatch, capsys, argv, dest):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    if dest.startswith("readonly"):
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        (tmp_path / "readonly").mkdir(mode=0o555)
    import helix.commands.reproduce
    import helix.search

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the destination was checked")

    # helix calibrate and validate: tests/validation/test_commands.py (they run torch)
    for module, name in ((helix.commands.reproduce, "reproduce"), (helix.search, "sweep")):
        monkeypatch.setattr(module, name, no_work)
    assert main([*argv, "--out", dest]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] + (["readonly"] if "readonly" in dest else [])
    assert (tmp_path / "afile").read_text() == "keep"


# ---------------------------------------------------------------- failures and interrupts while writing

SWEEP = ["sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4", "--quiet"]


def test_full_disk_is_one_line_exit_1_previous_result_kept(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    before = previous_result(out)

    def full(path, fronts):
        path.write_text("frontier,cut")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("helix.commands.search.write_frontiers_csv", full)
    assert main([*SWEEP, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out / "frontier.csv") in err[0]
    assert "kept as it was" in err[0]
    assert snapshot(out) == before and siblings(out) == []


def test_an_interrupt_a_library_swallowed_still_stops_the_commit(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    before = previous_result(out)
    from helix.commands import search as cmd

    real = cmd.write_frontiers_csv

    def swallowing(path, fronts):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what a careless callback does
        real(path, fronts)

    monkeypatch.setattr(cmd, "write_frontiers_csv", swallowing)
    assert main([*SWEEP, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"helix sweep: interrupted; {out} kept as it was"]
    assert snapshot(out) == before and siblings(out) == []


def test_what_one_command_received_does_not_stop_a_later_write(tmp_path):
    with outputs.handle_signals():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        assert outputs.received() == signal.SIGINT
    assert outputs.received() is None
    with outputs.output_dir(tmp_path / "out", "helix sweep") as tmp:
        (tmp / "points.csv").write_text("new\n")
    assert (tmp_path / "out" / "points.csv").read_text() == "new\n"


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("previous", [True, False])
def test_a_real_signal_during_reproduce(tmp_path, sig, code, previous):
    out = tmp_path / "out"
    before = previous_result(out, "helix reproduce") if previous else None
    p = subprocess.Popen([sys.executable, "-m", "helix", "reproduce", "--quick", "--quiet", "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    tmp = out.with_name(f"out.tmp-{p.pid}")
    deadline = time.monotonic() + 20
    while not tmp.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the run is under way once its temporary folder exists
    time.sleep(1.0)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code
    state = f"{out} kept as it was" if previous else f"nothing written to {out}"
    assert err.splitlines() == [f"helix reproduce: interrupted; {state}"]
    if previous:
        assert snapshot(out) == before
    else:
        assert not out.exists()
    assert siblings(out) == []


# ---------------------------------------------------------------- an interrupt while the program starts


def test_the_program_imports_nothing_heavy_before_its_signal_handling():
    code = "import sys, helix, helix.cli; print(sorted(m for m in ('numpy', 'yaml', 'torch', 'matplotlib', " \
           "'helix.step', 'helix.specs') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["numpy", "yaml", "helix.specs"])
def test_a_real_sigint_while_the_command_modules_import_is_one_line(module):
    """SIGINT delivered from inside the import of `module` (a meta-path hook sends it), as a Ctrl-C in the
    first fraction of a second would be: one line, exit 130, no traceback."""
    code = ("import os, signal, sys\n"
            "class Hook:\n"
            "    def find_spec(self, name, path, target=None):\n"
            f"        if name == {module!r}: os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.meta_path.insert(0, Hook())\n"
            "sys.argv = ['helix', 'models']\n"
            "from helix.cli import main\n"
            "raise SystemExit(main())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (p.returncode, p.stderr.splitlines(), p.stdout) == (130, ["helix: interrupted"], "")


@pytest.mark.parametrize("argv0, orig, expected", [
    ("-m", ["python", "-m", "helix", "models"], True),  # while runpy imports the package
    ("-m", ["python", "-mhelix"], True),
    ("-m", ["python", "-m", "helixfoo"], False),
    ("-m", ["python", "-m", "pytest"], False),
    ("/venv/bin/helix", ["python", "/venv/bin/helix", "models"], True),
    ("/venv/bin/pytest", ["python", "/venv/bin/pytest"], False),
    ("", ["python"], False),
])
def test_the_program_is_told_from_a_library_import(monkeypatch, argv0, orig, expected):
    import helix

    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.setattr(sys, "orig_argv", orig)
    assert helix._is_the_program() is expected


def test_a_sigint_right_after_the_package_imports_is_one_line():
    """As the program (argv[0] is the helix script) the package's own handler is in place at once; imported
    as a library, it leaves SIGINT alone."""
    code = ("import os, signal, sys, time; sys.argv = ['/venv/bin/helix']; import helix\n"
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(30)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert (p.returncode, p.stderr) == (130, "helix: interrupted\n")
    code = "import signal, helix; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "True\n"
