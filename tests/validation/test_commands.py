"""The validation commands refuse an unwritable destination before any work, and ``python -m
helix.validation.gpu_check`` is still the gpu-check command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import helix.validation.calibrate
import helix.validation.gpu_check
import helix.validation.validate
from helix.cli import main

UNDER_A_FILE = "afile/out"


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the destination was checked")


@pytest.mark.parametrize("argv", [
    ["calibrate", "--quick"],
    ["validate", "--quick", "--hardware", "h200"],
    ["gpu-check", "--cpu-smoke"],
])
@pytest.mark.parametrize("dest", ["", UNDER_A_FILE, "/proc/helix-test-out", "readonly/out"])
def test_unwritable_destination_is_one_line_exit_2_before_any_work(tmp_path, monkeypatch, capsys, argv, dest):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    if dest.startswith("readonly"):
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder")
        (tmp_path / "readonly").mkdir(mode=0o555)
    if argv[0] == "calibrate" and dest:
        dest += ".yaml"
    for module, name in ((helix.validation.calibrate, "calibrate"), (helix.validation.validate, "run_validation"),
                         (helix.validation.gpu_check, "run")):
        monkeypatch.setattr(module, name, _no_work)
    assert main([*argv, "--out", dest]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] + (["readonly"] if "readonly" in dest else [])
    assert (tmp_path / "afile").read_text() == "keep"


def test_python_m_gpu_check_is_the_command(tmp_path):
    # the older spelling: an unwritable --out is the command's own one-line error, exit 2
    (tmp_path / "afile").write_text("keep")
    done = subprocess.run([sys.executable, "-m", "helix.validation.gpu_check", "--cpu-smoke", "--out",
                           str(tmp_path / UNDER_A_FILE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("helix gpu-check: error: --out") and len(done.stderr.strip().splitlines()) == 1
