"""``helix calibrate`` for real (tiny sizes) and its bad input: one line, exit 2, nothing written."""

from __future__ import annotations

import os

import pytest

from helix.cli import main
from helix.specs.hardware import load_hardware
from helix.validation import fit


class _Bar:
    """Stands in for helix.progress.bar: records what the command reports."""

    def __init__(self, total, desc, unit="it", quiet=False):
        self.total, self.desc, self.steps, self.labels = total, desc, 0, []
        _Bar.last = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix_str(self, text, refresh=True):
        self.labels.append(text)

    def update(self, n):
        self.steps += n


def test_calibrate_quick_cli_writes_a_loadable_profile(tmp_path, capsys, monkeypatch):
    import helix.progress
    import helix.search  # noqa: F401 - it binds helix.progress.bar at import: not while the stand-in is in

    monkeypatch.setattr(helix.progress, "bar", _Bar)
    out = tmp_path / "cpu.yaml"
    ranks = str(min(2, os.cpu_count() or 1))  # more ranks than cores is refused
    code = main(["calibrate", "--quick", "--out", str(out), "--max-ranks", ranks, "--name", "smoke"])
    assert code == 0
    # the progress bar: every stage once, in order, to its total
    assert (_Bar.last.desc, _Bar.last.total, _Bar.last.steps) == ("calibrate", 4, 4)
    assert _Bar.last.labels == ["compute", "collectives", "drifting rates", "fit"]
    hw = load_hardware(out)
    assert hw.name == "smoke"
    rows = (tmp_path / "cpu.measurements.csv").read_text().splitlines()
    kinds = {r.split(",")[0] for r in rows[1:]}
    assert {"launch", "stream_read", "gemv", "decode_attention", "matmul"} <= kinds
    if (os.cpu_count() or 1) >= 2:  # the profile's latencies are the joint fit of the recorded timings
        coll = [r.split(",") for r in rows[1:] if r.split(",")[0] in fit.KINDS]
        assert {c[0] for c in coll} == set(fit.KINDS)
        f = fit.fit_collectives([c[0] for c in coll], [float(c[3]) for c in coll], [int(c[5]) for c in coll],
                                [float(c[6]) for c in coll])
        assert hw.sync_latency_s == pytest.approx(f.coefficients["sync_latency_s"], rel=1e-3, abs=1e-9)
        assert hw.ring_base_latency_s == pytest.approx(f.coefficients["ring_base_latency_s"], rel=1e-3, abs=1e-9)
        assert 0.0 <= hw.comm_overlap_efficiency <= 1.0 and "comm_overlap_efficiency" in hw.empirical
        assert "comm_overlap" in kinds
    assert '"profile"' in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("argv, field", [
    (["calibrate", "--out", "profile.txt"], "--out"),
    (["calibrate", "--quick", "--max-ranks", "0"], "--max-ranks"),
    (["calibrate", "--quick", "--max-ranks", "100000"], "--max-ranks: must be 1 to this machine's"),
    (["calibrate", "--quick", "--name", ""], "--name: must be 1 to 100 printable"),
    (["calibrate", "--quick", "--name", "a\nb"], "--name: must be 1 to 100 printable"),
    (["calibrate", "--from-perf-db", "--out-dir", "afile/ops"], "--out-dir: parent directory"),
    (["validate", "--quick", "--hardware", "h100", "--repeats", "10001"], "--repeats: must be 1 to 10,000"),
    (["validate", "--hardware", "missing-profile.yaml"], "--hardware"),
    (["validate", "--hardware", "no-such-preset"], "--hardware"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, argv, field):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]
