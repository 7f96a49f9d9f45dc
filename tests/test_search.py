"""helix.search: Pareto extraction, claim metrics on synthetic frontiers, grid and sweep counts by hand."""

import numpy as np
import pytest

from helix import load_hardware, load_model, search
from helix.search import Points


def pts(x, y, feasible=None, strategy="helix"):
    """Hand-made Points: only interactivity, throughput and feasibility matter to the frontier."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    one = np.ones(n, dtype=np.int64)
    return Points(strategy=np.full(n, strategy, dtype=object), tpa=one, kvp=one, dp=one, tpf=one, ep=one, pp=one,
                  batch=np.arange(1, n + 1), num_gpus=one, ttl_s=1 / x, tokens_per_s_per_user=x,
                  tokens_per_s_per_gpu=y, memory_per_gpu_bytes=np.zeros(n), weight_bytes_per_gpu=np.zeros(n),
                  kv_bytes_per_gpu=np.zeros(n), feasible=np.ones(n, bool) if feasible is None else np.array(feasible),
                  reason_code=np.zeros(n, dtype=np.int64))


# ---------------------------------------------------------------- Pareto frontier

def test_pareto_drops_dominated_points():
    # (2, 1) is dominated by (2, 2); (1, 0.5) by everything
    keep = search.pareto_mask([1, 2, 3, 2, 1], [3, 2, 1, 1, 0.5])
    assert keep.tolist() == [True, True, True, False, False]


def test_pareto_ties():
    # exact duplicates: the first survives; equal x: the higher y; equal y: the higher x
    assert search.pareto_mask([1, 1], [1, 1]).tolist() == [True, False]
    assert search.pareto_mask([2, 2], [1, 3]).tolist() == [False, True]
    assert search.pareto_mask([1, 4], [5, 5]).tolist() == [False, True]


def test_pareto_one_point_and_empty():
    assert search.pareto_mask([7.0], [0.1]).tolist() == [True]
    assert search.pareto_mask([], []).tolist() == []


def test_frontier_skips_infeasible_and_sorts_by_interactivity():
    p = pts([3, 1, 2, 5], [1, 3, 2, 9], feasible=[True, True, True, False])
    f = search.frontier(p)
    assert f.tokens_per_s_per_user.tolist() == [1, 2, 3]
    assert f.tokens_per_s_per_gpu.tolist() == [3, 2, 1]


def test_frontiers_baseline_is_union_of_non_helix_and_global_is_labelled():
    h = pts([4, 1], [1, 2], strategy="helix")
    t = pts([2, 1], [3, 5], strategy="tp")
    m = pts([3], [0.5], strategy="medha")
    fr = search.frontiers(Points.concat([h, t, m]))
    assert fr["baseline"].tokens_per_s_per_user.tolist() == [1, 2, 3]
    assert fr["baseline"].strategy.tolist() == ["tp", "tp", "medha"]
    assert list(zip(fr["global"].strategy, fr["global"].tokens_per_s_per_user, strict=True)) == [
        ("tp", 1), ("tp", 2), ("helix", 4)]


# ---------------------------------------------------------------- claim metrics

def test_max_interactivity_ratio():
    assert search.max_interactivity_ratio([10, 15], [10, 12]) == 1.25
    assert np.isnan(search.max_interactivity_ratio([], [1.0]))


def test_best_within_budget():
    got = search.best_within_budget([1, 2, 3], [5, 3, 10], [0.5, 1, 2.5, 3, 4])
    assert np.isnan(got[0])
    assert got[1:].tolist() == [5, 5, 10, 10]


def test_budget_ratio_maximised_where_both_feasible():
    # helix: TTL 1, 2, 4 -> 4, 8, 16; baseline: TTL 2, 4 -> 1, 8.
    # budget 1: baseline infeasible (skipped); 2: 8/1 = 8; 4: 16/8 = 2.
    br = search.budget_ratio([1, 2, 4], [4, 8, 16], [2, 4], [1, 8])
    assert br.budgets_s.tolist() == [2, 4]
    assert br.ratio.tolist() == [8, 2]
    assert br.max_ratio == 8 and br.at_budget_s == 2


def test_budget_ratio_uses_best_point_within_budget_not_at_it():
    # baseline's 3 users at TTL 1 still count at budget 3
    br = search.budget_ratio([3], [12], [1, 3], [3, 1])
    assert br.ratio.tolist() == [4] and br.max_ratio == 4


def test_hopb_loss_on_synthetic_frontiers():
    # on: (10, 1) (8, 2) (5, 4); off: (9, 1) (6, 2) (5, 3); common range y <= 3.
    # x_on = 10, 8, 6.5 (halfway from (8, 2) to (5, 4)) and x_off = 9, 6, 5 at y = 1, 2, 3
    # -> loss 0.1, 0.25, 1 - 5/6.5
    lc = search.hopb_loss([10, 8, 5], [1, 2, 4], [9, 6, 5], [1, 2, 3])
    assert lc.throughput.tolist() == [1, 2, 3]
    assert lc.loss == pytest.approx([0.1, 0.25, 1 - 5 / 6.5])
    assert lc.max_loss == pytest.approx(0.25) and lc.at_throughput == 2


def test_hopb_loss_is_zero_for_identical_frontiers():
    lc = search.hopb_loss([3, 2], [1, 2], [3, 2], [1, 2])
    assert lc.max_loss == 0.0


def test_helix_vs_baseline_on_hand_made_points():
    h = pts([4, 2], [1, 6], strategy="helix")  # TTL 0.25, 0.5
    b = pts([2, 1], [2, 3], strategy="tp")  # TTL 0.5, 1
    c = search.helix_vs_baseline(Points.concat([h, b]))
    assert c.max_interactivity_ratio == 2.0
    # budget 0.5: helix max(1, 6) = 6 vs 2 -> 3; budget 1: 6 vs 3 -> 2
    assert c.throughput.max_ratio == 3.0 and c.throughput.at_budget_s == 0.5
    # users = batch (pp = 1): helix batches 1, 2; tp batches 1, 2 -> budget 0.5: 2 / 1
    assert c.batch.max_ratio == 2.0


# ---------------------------------------------------------------- grids and sweep counts

def test_batch_grid():
    assert search.batch_grid(5).tolist() == [1, 2, 3, 4, 5]
    assert search.batch_grid(128).tolist() == list(range(1, 129))
    g = search.batch_grid(256)
    assert len(g) == 128 + 16 and g[-1] == 256 and np.all(np.diff(g) > 0)
    assert g[128] == 134  # round(128 * 2^(1/16))
    assert search.batch_grid(300)[-1] == 300


def test_layout_counts_by_hand_llama():
    """Llama (Q = 128, K = 8, dense) on <= 4 GPUs; the counts are worked out in the comments."""
    m = load_model("llama-3.1-405b")
    count = {s: len(search.enumerate_layouts(m, s, 4)["tpa"]) for s in search.STRATEGIES}
    # tp: N in {1, 2, 4} (3 does not divide Q)
    # tp_pp: (N, PP) in (1,2) (1,3) (1,4) (2,2)
    # medha: PP=1: N=1:1, N=2:2, N=3:1 (TP=1), N=4:3; PP=2: 1+2; PP=3: 1; PP=4: 1 -> 12
    # helix: PP=1: N=1:1, N=2:3, N=3:0, N=4:6; PP=2: 1+3; PP=3: 1; PP=4: 1 -> 16
    #   (N=3, DP=3 needs TPF = 3, which does not divide F = 53,248: rejected unless allow_uneven)
    assert count == {"tp": 3, "tp_pp": 4, "dp_ep": 0, "medha": 12, "helix": 16}
    uneven = len(search.enumerate_layouts(m, "helix", 4, allow_uneven=True)["tpa"])
    assert uneven == 17


def test_layout_counts_by_hand_deepseek():
    """DeepSeek-R1 (one latent KV head, 256 experts) on <= 2 GPUs."""
    m = load_model("deepseek-r1")
    count = {s: len(search.enumerate_layouts(m, s, 2)["tpa"]) for s in search.STRATEGIES}
    # tp: N=1; N=2 with MoE as TPF x EP in (2,1) (1,2); tp_pp: (N, PP) = (1, 2)
    # dp_ep: (N, PP) in (1,1) (1,2); N=2 with MoE as TPF x EP in (1,2) (2,1)
    # medha: TP = 1, (KVP, PP) in (1,1) (2,1) (1,2)
    # helix: N=1: 1; N=2: (KVP, DP) in (2,1) (1,2) x EP in {1, 2}: 4; PP=2: 1
    assert count == {"tp": 3, "tp_pp": 1, "dp_ep": 4, "medha": 3, "helix": 6}


def test_sweep_counts_on_tiny_grid():
    hw = load_hardware("gb200-nvl72")
    sw = search.sweep(load_model("llama-3.1-405b"), hw, 1000, max_gpus=4, max_batch=4)
    assert sw.batch_grid.tolist() == [1, 2, 3, 4]
    assert len(sw.points) == (3 + 4 + 12 + 16) * 4
    c = sw.counts()
    assert c["per_strategy"]["helix"]["evaluated"] == 16 * 4
    # batch < DP where the weights fit: DP=2 (N=2; N=4 KVP=2; N=4 TPA=2; PP=2 N=2): batch 1 each -> 4;
    # DP=4: batches 1, 2, 3 -> 3 (DP=3 needs TPF = 3, uneven over F = 53,248)
    assert c["dropped"]["batch_below_dp"] == 7
    assert c["evaluated"] == c["feasible"] + sum(c["dropped"].values())


def test_sweep_weights_exceed_hbm_on_two_gpus():
    m, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    assert m.total_params * 0.5 / 2 > hw.usable_hbm_bytes  # FP4 weights over 2 GPUs do not fit
    sw = search.sweep(m, hw, 1000, max_gpus=2, max_batch=3)
    c = sw.counts()
    assert c["evaluated"] == 17 * 3  # the 17 layouts of test_layout_counts_by_hand_deepseek
    assert c["feasible"] == 0 and c["dropped"]["weights_exceed_hbm"] == 51


def test_sweep_matches_simulate_pointwise():
    from helix import simulate

    m, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    sw = search.sweep(m, hw, 10**6, strategies=("helix", "dp_ep"), max_gpus=16, max_batch=8)
    feasible = np.flatnonzero(sw.points.feasible)
    for i in (0, len(sw.points) // 2, len(sw.points) - 1, *feasible[[0, len(feasible) // 2, -1]]):
        r = simulate(m, hw, sw.points.layout(i), int(sw.points.batch[i]), 10**6)
        assert bool(sw.points.feasible[i]) == bool(r.feasible)
        if r.feasible:
            assert sw.points.ttl_s[i] == pytest.approx(float(r.ttl_s), rel=1e-12)
        else:  # the sweep times only the points whose memory fits
            assert np.isnan(sw.points.ttl_s[i])


def test_max_batch_per_layout_is_the_memory_limit():
    m, hw = load_model("llama-3.1-405b"), load_hardware("gb200-nvl72")
    sw = search.sweep(m, hw, 10**6, strategies=("helix",), max_gpus=16)
    lay = search.enumerate_layouts(m, "helix", 16)
    limit = search.max_batch_per_layout(m, hw, search.PrecisionSpec(), "helix", lay, 10**6)
    p = sw.points
    layout_index = np.repeat(np.arange(len(limit)), len(sw.batch_grid))
    over = p.batch > limit[layout_index]
    assert not np.any(p.feasible & over)  # nothing above the limit is feasible
    kv_limited = (p.reason_code != 1) & (p.batch >= p.dp) & ~over
    assert np.all(p.feasible[kv_limited])  # everything at or below it is (weights fit, batch >= DP)
    assert sw.batch_grid[-1] == limit.max()


def test_full_1m_sweeps_are_large_enough():
    hw = load_hardware("gb200-nvl72")
    # the paper searches > 100,000 configurations; Llama's F = 53,248 = 2^12 x 13 divides over few TPF,
    # so its even-only default holds fewer (83,680) and the paper's count needs allow_uneven
    assert len(search.sweep(load_model("deepseek-r1"), hw, 10**6).points) >= 100_000
    llama = load_model("llama-3.1-405b")
    even = len(search.sweep(llama, hw, 10**6).points)
    uneven = len(search.sweep(llama, hw, 10**6, allow_uneven=True).points)
    assert 80_000 <= even < 100_000 <= uneven


def test_bad_strategy_and_gpus():
    m, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    with pytest.raises(search.HelixInputError, match="--strategies: unknown 'nope'"):
        search.sweep(m, hw, 1000, strategies=("nope",))
    with pytest.raises(search.HelixInputError, match="--max-gpus"):
        search.sweep(m, hw, 1000, max_gpus=0)


def test_last_bit_differences_are_not_a_loss():
    """The same configuration under two overlap modes may differ in the last bit; that is no HOP-B loss."""
    y = 19.618502277500518
    lc = search.hopb_loss([69.75, 66.58], [y, 20.8], [69.75, 66.58], [y * (1 - 2e-16), 20.8])
    assert abs(lc.max_loss) < 1e-12
    br = search.budget_ratio([1.0], [5.0], [1.0 + 1e-15], [1.0])
    assert br.ratio.tolist() == [5.0, 5.0]  # the baseline point counts at the helix budget too


def test_interactivity_at_throughput_interpolates_the_frontier():
    # frontier (6, 1) (4, 3); the dominated (3, 2) is ignored
    got = search.interactivity_at_throughput([6, 4, 3], [1, 3, 2], [0.5, 1, 2, 3, 3.5])
    assert got[:4].tolist() == [6, 6, 5, 4] and np.isnan(got[4])


def test_hopb_loss_ignores_a_tiny_throughput_shift():
    """Two frontiers a hair apart in throughput: the loss is that hair, not a jump to the next point."""
    on_x, on_y = [128.0, 117.7, 108.9], [20.0, 22.0627, 23.8]
    off_x, off_y = [128.0, 117.7, 108.9], [20.0, 22.0616, 23.8]
    assert search.hopb_loss(on_x, on_y, off_x, off_y).max_loss < 1e-4


def test_ttl_ratio_at_equal_users_by_hand():
    # Helix: users 1 at 10 ms (and a slower 12 ms point), users 4 at 20 ms; baseline: users 1 at 15 ms,
    # users 4 at 50 ms, users 8 at 60 ms (no Helix point at 8: not compared)
    r = search.ttl_ratio_at_equal_users([1, 1, 4], [0.010, 0.012, 0.020], [1, 4, 8], [0.015, 0.050, 0.060])
    assert r.users.tolist() == [1, 4]
    assert r.ratio.tolist() == pytest.approx([1.5, 2.5])
    assert (r.max_ratio, r.at_users) == (pytest.approx(2.5), 4.0)
    empty = search.ttl_ratio_at_equal_users([2], [0.01], [3], [0.01])
    assert empty.ratio.size == 0 and np.isnan(empty.max_ratio)


def test_a_sweep_the_machine_cannot_hold_is_refused_before_any_work(monkeypatch):
    from helix import search_grid
    from helix.errors import HelixInputError

    monkeypatch.setattr(search_grid, "available_memory_bytes", lambda: 10**4)  # 10 kB free: 9 points
    with pytest.raises(HelixInputError, match="--max-gpus: a sweep of .* points needs about .* GB"):
        search.sweep(load_model("llama-3.1-405b"), load_hardware("gb200-nvl72"), 10**6, max_gpus=8)
    monkeypatch.setattr(search_grid, "available_memory_bytes", lambda: None)  # the machine does not say
    assert len(search.sweep(load_model("llama-3.1-405b"), load_hardware("gb200-nvl72"), 10**6, max_gpus=2).points)
