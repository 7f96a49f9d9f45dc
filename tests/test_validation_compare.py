"""Validation's pure parts by hand: rank combination, term matching, errors, the grid and the shape checks."""

from __future__ import annotations

import pytest

from helix.specs.model_loader import load_model
from helix.validation import compare, tables
from helix.validation.grid import GridPoint, default_grid

P = GridPoint(kvp=2, tpa=1, hopb=False, batch=4, context=4096)


def test_combine_ranks_takes_slowest_rank_then_median():
    per_rank = [
        {"step_s": [1.0, 5.0, 3.0], "phase_s": [{"ffn": 0.1}, {"ffn": 0.5}, {"ffn": 0.3}]},
        {"step_s": [2.0, 4.0, 1.0], "phase_s": [{"ffn": 0.2}, {"ffn": 0.1}, {"ffn": 0.4, "kvp_all_to_all": 0.9}]},
    ]
    per_rank[0]["phase_s"][2]["kvp_all_to_all"] = 0.2
    per_rank[0]["phase_s"][1]["kvp_all_to_all"] = 0.7
    per_rank[1]["phase_s"][1]["kvp_all_to_all"] = 0.3
    m = compare.combine_ranks(P, per_rank)
    assert m.step_s == 3.0  # slowest per repeat: [2, 5, 3] -> median 3
    assert m.mean_step_s == pytest.approx(10 / 3)
    # compute phase: slowest rank [0.2, 0.5, 0.4] -> mean 1.1/3; collective: mean over ranks [0, 0.5, 0.55] -> 1.05/3
    assert m.phase_s == pytest.approx({"ffn": 1.1 / 3, "kvp_all_to_all": 1.05 / 3})
    assert m.spread == pytest.approx((5 - 2) / 3)
    assert m.samples == 3


def test_last_arrival_times_each_collective_from_the_last_rank_to_enter():
    # rank 0 enters the all-reduce at 1.0 and waits; rank 1 enters at 1.4; both leave at 1.5 / 1.6.
    spans = [[("ffn_all_reduce", 1.0, 1.5), ("kvp_all_to_all", 2.0, 2.1)],
             [("ffn_all_reduce", 1.4, 1.6), ("kvp_all_to_all", 1.9, 2.1)]]
    calls = compare.timed_calls(spans)
    assert [c[0] for c in calls] == ["ffn_all_reduce", "kvp_all_to_all"]
    assert [c[1] for c in calls] == pytest.approx([1.6 - 1.4, 2.1 - 2.0])
    assert [c[2] for c in calls] == pytest.approx([(0.4 + 0.0) / 2, (0.0 + 0.1) / 2])
    with pytest.raises(ValueError, match="different numbers"):
        compare.timed_calls([spans[0], spans[1][:1]])
    with pytest.raises(ValueError, match="disagree"):
        compare.timed_calls([spans[0], spans[1][::-1]])


def test_combine_ranks_uses_spans_for_blocking_collectives():
    per_rank = [
        {"step_s": [1.0, 1.2], "phase_s": [{"ffn_all_reduce": 0.5}, {"ffn_all_reduce": 0.1}],
         "spans": [[("ffn_all_reduce", 0.0, 0.5)], [("ffn_all_reduce", 0.0, 0.1)]]},
        {"step_s": [1.1, 1.0], "phase_s": [{"ffn_all_reduce": 0.1}, {"ffn_all_reduce": 0.05}],
         "spans": [[("ffn_all_reduce", 0.4, 0.5)], [("ffn_all_reduce", 0.06, 0.11)]]},
    ]
    m = compare.combine_ranks(P, per_rank)
    # repeat 1: last arrival 0.4 -> 0.5; repeat 2: 0.06 -> 0.11; not the mean over ranks (0.3, 0.075)
    assert m.phase_s == pytest.approx({"ffn_all_reduce": (0.1 + 0.05) / 2})
    assert m.wait_s == pytest.approx((0.4 / 2 + 0.06 / 2) / 2)
    assert m.calls_s == {"ffn_all_reduce": pytest.approx([0.1, 0.05])}


def test_default_grid_times_only_layouts_with_a_core_per_rank():
    two = default_grid(2)
    assert len(two.points) == 33 and max(p.ranks for p in two.points) == 2
    assert {(p.kvp, p.tpa, p.hopb) for p in two.points} == {(1, 1, False), (2, 1, False), (2, 1, True), (1, 2, False)}
    assert not any(p.hopb and p.batch == 1 for p in two.points)  # one request: nothing to pipeline
    assert {(p.kvp, p.tpa) for p in default_grid(1).points} == {(1, 1)}
    eight = default_grid(16)
    assert max(p.ranks for p in eight.points) == 8 and max(p.tpa for p in eight.points) == 4  # 4 KV heads
    assert len(default_grid(4).points) == 33 + 9 * 3 + 6 and len(eight.points) == 66 + 18


def test_compare_matches_terms_and_computes_errors():
    measured = compare.Measured(P, step_s=0.010, phase_s={"local_attention": 0.006, "kvp_all_to_all": 0.001,
                                                       "qkv_projection": 0.0005}, samples=5, spread=0.1,
                            mean_step_s=0.011)
    breakdown = {"attention": 0.0048, "kvp_all_to_all": 0.0015, "qkv_projection": 0.0005, "ffn": 0.0002,
                 "embedding_lm_head": 0.0001}
    row = compare.compare(measured, breakdown, ttl_s=0.0071)
    assert row.error == pytest.approx((0.0071 - 0.010) / 0.010)
    assert row.terms["attention"] == (0.0048, 0.006)
    assert row.terms["ffn"] == (0.0002, 0.0)  # predicted, not timed by the runtime
    assert row.terms[compare.OTHER] == pytest.approx((0.0001, 0.011 - 0.0075))  # against the mean step
    ts = {t["term"]: t for t in tables.term_summary([row])}
    assert ts["attention"]["err_median"] == pytest.approx(-0.2)
    assert ts["kvp_all_to_all"]["err_median"] == pytest.approx(0.5)
    assert "ffn" not in ts  # no measurement to compare with


def _row(p, meas, pred, a2a=None):
    """a2a: each of 2 layers' calls takes a2a / 2 in every one of 3 steps."""
    terms = {} if a2a is None else {"kvp_all_to_all": (0.001, a2a)}
    calls = {} if a2a is None else {"kvp_all_to_all": [a2a / 2] * 6}
    return compare.Row(p, meas, pred, 0.0, terms, calls_s=calls, samples=3)


def test_shape_checks_linearity_a2a_and_hopb():
    rows = []
    for s in (1000, 2000, 4000):
        off = GridPoint(2, 1, False, 4, s)
        on = GridPoint(2, 1, True, 4, s)
        rows.append(_row(off, 0.002 + 1e-6 * s, 0.002 + 1.1e-6 * s, a2a=0.001))
        rows.append(_row(on, 0.0015 + 1e-6 * s, 0.0016 + 1.1e-6 * s))
    checks = tables.shape_checks(rows)
    lin = [c for c in checks if c["check"] == "linear in context"]
    assert len(lin) == 2 and all(c["ok"] for c in lin)
    assert "slope 1000.0 ns/token" in lin[0]["measured"]
    a2a = [c for c in checks if c["check"] == "all-to-all independent of context"]
    assert len(a2a) == 1 and a2a[0]["ok"]
    assert "S=1000: 0.50 ms (p90 0.5)" in a2a[0]["measured"] and a2a[0]["predicted"].startswith("0.50 ms per call")
    gains = [c for c in checks if c["check"] == "HOP-B gain where predicted"]
    assert [c["where"] for c in gains] == ["KVP=2 B=4 S=1000", "KVP=2 B=4 S=2000", "KVP=2 B=4 S=4000"]
    assert gains[0]["measured"] == f"{(0.003 - 0.0025) / 0.003:+.1%}"
    assert all(c["ok"] for c in gains)  # measured 17, 12.5, 8 %; predicted 16, 12, 8 %: gains both
    close = [c for c in checks if c["check"] == "HOP-B gain within 10 points"]
    assert len(close) == 3 and all(c["ok"] for c in close)


def test_shape_checks_flag_a_missing_gain_and_a_context_dependent_all_to_all():
    rows = []
    for s, a2a in ((1000, 0.001), (2000, 0.0012), (4000, 0.002)):  # 2x from the shortest to the longest
        off = GridPoint(2, 1, False, 4, s)
        # per call: a 4 ms tick in one call of six leaves the median at a2a; the means are all 5 ms
        calls = [a2a] * 5 + [0.03 - 5 * a2a]
        rows.append(compare.Row(off, 0.002 + 1e-6 * s, 0.002 + 1e-6 * s, 0.0, {"kvp_all_to_all": (0.001, 0.01)},
                            calls_s={"kvp_all_to_all": calls}, samples=3))
        # HOP-B: the model predicts a 20 % gain, the runtime loses 5 %
        rows.append(_row(GridPoint(2, 1, True, 4, s), 1.05 * (0.002 + 1e-6 * s), 0.8 * (0.002 + 1e-6 * s)))
    checks = tables.shape_checks(rows)
    a2a = [c for c in checks if c["check"] == "all-to-all independent of context"]
    assert len(a2a) == 1 and not a2a[0]["ok"]  # the trend through every call: 1.7x; the means are flat
    assert "S=4000: 2.00 ms" in a2a[0]["measured"] and "fitted trend 1.7" in a2a[0]["measured"]
    assert not any(c["ok"] for c in checks if c["check"].startswith("HOP-B"))


def test_all_to_all_check_reads_a_trend_not_a_mixture_of_fast_and_slow_calls():
    # Bimodal calls (0.3 ms or a 4 ms scheduler tick), the slow share 2/6, 4/6, 2/6: the median per S
    # jumps 0.3 -> 4 -> 0.3 ms, yet nothing grows with S, and the fitted trend says so.
    mix = {1000: [0.3, 0.3, 0.3, 4, 4, 0.3], 2000: [0.3, 4, 4, 4, 0.3, 4], 4000: [4, 0.3, 0.3, 0.3, 4, 0.3]}
    rows = [compare.Row(GridPoint(2, 1, False, 4, s), 0.002 + 1e-6 * s, 0.002 + 1e-6 * s, 0.0,
                    {"kvp_all_to_all": (0.001, 0.005)}, calls_s={"kvp_all_to_all": [c * 1e-3 for c in calls]},
                    samples=3) for s, calls in mix.items()]
    (a2a,) = [c for c in tables.shape_checks(rows) if c["check"] == "all-to-all independent of context"]
    assert a2a["ok"] and "S=2000: 4.00 ms" in a2a["measured"] and "fitted trend 1.00x" in a2a["measured"]


def test_simulated_launches_by_runtime_phase_come_from_the_inventory():
    model = load_model("llama-3.1-405b")  # dense GQA: per layer qkv, attention, o 1 each, the FFN 2; per step 2
    got = compare.simulated_launches(model)
    L = model.num_layers
    assert got == {"qkv_projection": L, "local_attention": L, "combine_partial_attention": 0, "o_projection": L,
                   "ffn": 2 * L, compare.OTHER: 2}
