"""``helix sweep --feasible-only`` and the progress bars (stderr, only on a terminal, never with --quiet)."""

from __future__ import annotations

import csv

import pytest

from helix import progress
from helix.cli import main
from helix.commands import search as search_cmd
from helix.report import write_points_csv

SWEEP = ["sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_feasible_only_keeps_the_feasible_rows_and_says_how_many_were_dropped(tmp_path, capsys):
    assert main([*SWEEP, "--out", str(tmp_path / "all"), "--quiet"]) == 0
    capsys.readouterr()
    assert main([*SWEEP, "--out", str(tmp_path / "ok"), "--quiet", "--feasible-only"]) == 0
    out = capsys.readouterr().out
    every, kept = _rows(tmp_path / "all" / "points.csv"), _rows(tmp_path / "ok" / "points.csv")
    feasible = [r for r in every if r["feasible"] == "1"]
    assert 0 < len(kept) == len(feasible) < len(every)
    assert kept == feasible  # the same rows, in the same order, column for column
    assert f"points.csv ({len(kept):,} points) ({len(every) - len(kept):,} infeasible points dropped" in out


def test_points_csv_in_chunks_equals_the_report_writer(tmp_path, capsys, monkeypatch):
    from helix import load_hardware, load_model, search

    sw = search.sweep(load_model("llama-3.1-405b"), load_hardware("gb200-nvl72"), 1000, max_gpus=4)
    monkeypatch.setattr(search_cmd, "CSV_CHUNK_ROWS", 999)  # several chunks, a partial last one
    search_cmd._write_points_csv(tmp_path / "a.csv", sw.points, quiet=True)
    write_points_csv(tmp_path / "b.csv", sw.points)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert len(sw.points) % 999 and len(sw.points) > 999


def test_feasible_only_without_out_is_one_line_exit_2(capsys):
    assert main([*SWEEP, "--feasible-only"]) == 2
    err = capsys.readouterr().err
    assert err == "helix sweep: error: --feasible-only: filters points.csv, which only --out DIR writes: add --out " \
                  "or drop it\n"


@pytest.mark.parametrize("tty, quiet, shown", [(True, False, True), (True, True, False), (False, False, False)])
def test_sweep_progress_only_on_a_terminal_and_not_quiet(tmp_path, capsys, monkeypatch, tty, quiet, shown):
    monkeypatch.setattr(progress, "is_tty", lambda: tty)
    monkeypatch.setattr(search_cmd, "LONG_SWEEP_POINTS", 0)  # this small sweep counts as long
    argv = [*SWEEP, "--out", str(tmp_path / "sw")] + (["--quiet"] if quiet else [])
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert ("sweep llama-3.1-405b" in err and "writing points.csv" in err) is shown
    assert (err == "") is not shown
    assert "sweep llama-3.1-405b:" not in out and "writing" not in out  # stdout holds the answer only
