"""``helix validate``'s pipeline on the tiny grid, for real: the rows, the simulator's predictions, the files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from helix.layout import Layout
from helix.specs.hardware import load_hardware
from helix.specs.precision import PrecisionSpec
from helix.step import simulate
from helix.validation import tables
from helix.validation.compare import OTHER
from helix.validation.grid import tiny_grid
from helix.validation.validate import run_validation


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    hw = load_hardware("h100")
    grid = tiny_grid()
    calls = []
    result = run_validation(grid, hw, progress=lambda label, n: calls.append((label, n)))
    # one layout (KVP 2), its 4 points (2 contexts x HOP-B off/on): the progress bar's one step of 4
    assert calls == [(grid.points[0].label.split(" HOP-B")[0], 4)] and len(grid.points) == 4
    out = tmp_path_factory.mktemp("validation")
    return grid, hw, result, out, tables.write_outputs(result, out)


def test_tiny_grid_rows_match_the_grid_and_the_simulator(tiny):
    grid, hw, result, _, _ = tiny
    assert [r.point for r in result.rows] == list(grid.points)
    from helix.runtime import registry

    entry = registry.get_model(grid.model)
    fam = registry.family(entry.family)
    model = fam.model_spec(fam.arch_from_hf_config(entry.build().config), grid.model)
    for r in result.rows:
        p = r.point
        want = simulate(model, hw, Layout.helix(kvp=p.kvp, tpa=p.tpa), p.batch, p.context,
                        PrecisionSpec.uniform("fp32"), overlap="pipelined" if p.hopb else "serial",
                        hopb_chunks=p.batch if p.hopb else None,  # a chunk per request, as the runtime
                        allow_uneven=True)
        assert r.predicted_s == float(want.ttl_s)
        assert r.error == (r.predicted_s - r.measured_s) / r.measured_s
        assert r.measured_s > 1e-4  # a real step: at least 100 us of gloo collectives and attention
        named = sum(m for t, (_, m) in r.terms.items() if t != OTHER)
        assert r.terms[OTHER][1] == pytest.approx(max(r.measured_mean_s - named, 0.0), abs=1e-12)
        assert r.predicted_ring_ar_s >= r.predicted_s  # ring-only can only cost more
        assert r.terms["kvp_all_to_all"][1] > 0  # KVP = 2: the exchange ran and was timed


def test_tiny_grid_files(tiny):
    _, _, result, out, paths = tiny
    assert sorted(p.name for p in paths) == ["terms.csv", "validation.csv", "validation.md", "validation.png"]
    with open(out / "validation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.rows) == 4
    for row, r in zip(rows, result.rows, strict=True):
        meas, pred = float(row["measured_ms"]), float(row["predicted_ms"])
        assert float(row["error"]) == pytest.approx((pred - meas) / meas, abs=2e-4)
        assert (int(row["kvp"]), int(row["hopb"]), int(row["context"])) == (r.point.kvp, int(r.point.hopb),
                                                                          r.point.context)
    s = result.summary()
    errors = np.array([r.error for r in result.rows])
    assert s["median_abs"] == pytest.approx(float(np.median(np.abs(errors))))
    md = (out / "validation.md").read_text()
    assert f"median |error| **{s['median_abs']:.1%}**" in md
    assert (out / "validation.png").stat().st_size > 10_000


def test_tiny_grid_reads_the_machine_speed_around_each_layout(tiny):
    _, hw, result, out, _ = tiny
    assert len(result.drift_rates) == 2  # one layout (KVP = 2): before it and at the end
    assert all(1e8 < r < 1e12 for r in result.drift_rates)  # a real attention over 128 MiB, in bytes/s
    assert result.profiled_rate == hw.hbm_bytes_per_s * hw.hbm_efficiency
    assert "Machine speed during this run" in (out / "validation.md").read_text()
    ms = result.mean_step_summary()
    assert ms["points"] == 4 and ms["max_abs"] >= ms["median_abs"]
