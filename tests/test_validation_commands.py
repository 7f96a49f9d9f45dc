"""Without torch: ``helix validate`` and ``helix gpu-check`` are absent (as ``helix run``'s torch is optional),
and ``helix calibrate`` refuses to measure in one line (its --from-perf-db needs no torch)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import pytest

from helix.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_without_torch_the_torch_commands_are_absent_and_calibrate_measures_nothing(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    for name in ("helix.commands.validate", "helix.commands.gpu_check"):  # imported afresh, torch "missing"
        monkeypatch.delitem(sys.modules, name, raising=False)
    commands = _commands(build_parser())
    assert "validate" not in commands and "gpu-check" not in commands
    assert {"calibrate", "simulate", "sweep"} <= commands
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "--quick", "--out", "p.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from-perf-db: measuring this machine needs torch" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_with_torch_every_validation_command_is_there():
    pytest.importorskip("torch")
    assert {"calibrate", "validate", "gpu-check"} <= _commands(build_parser())
