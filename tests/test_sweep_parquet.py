"""``helix sweep --parquet``: points.parquet holds points.csv's rows, typed; without --out or pyarrow, one line."""

from __future__ import annotations

import csv

import pytest

from helix.cli import main
from helix.commands import search as search_cmd

SWEEP = ["sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4", "--quiet"]


def test_parquet_holds_the_csv_rows_typed(tmp_path, capsys, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(search_cmd, "CSV_CHUNK_ROWS", 999)  # several row groups, a partial last one
    assert main([*SWEEP, "--out", str(tmp_path / "csv")]) == 0
    assert main([*SWEEP, "--out", str(tmp_path / "pq"), "--parquet"]) == 0
    assert "points.parquet (" in capsys.readouterr().out
    assert not (tmp_path / "pq" / "points.csv").exists()
    with open(tmp_path / "csv" / "points.csv") as f:
        rows = list(csv.DictReader(f))
    table = pq.read_table(tmp_path / "pq" / "points.parquet")
    assert table.num_rows == len(rows) > 999 and pq.ParquetFile(tmp_path / "pq" / "points.parquet").num_row_groups > 1
    got = table.to_pylist()
    assert str(table.schema.field("ttl_ms").type) == "double" and str(table.schema.field("kvp").type) == "int64"
    for want, have in zip(rows[::97], got[::97], strict=True):
        assert {k: str(v) for k, v in have.items()} == want  # the CSV's text of each value


@pytest.mark.parametrize(("argv", "message"), [
    (["--parquet"], "helix sweep: error: --parquet: writes points.parquet into --out DIR"),
])
def test_parquet_needs_out(argv, message, capsys, tmp_path):
    assert main([*SWEEP, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_parquet_without_pyarrow_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    assert main([*SWEEP, "--out", str(tmp_path / "x"), "--parquet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--parquet: needs pyarrow" in err[0]
    assert not (tmp_path / "x").exists()
