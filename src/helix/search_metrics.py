"""Frontiers and claim metrics over sweep points (definitions in helix.search's docstring).

Pure functions of point arrays: Pareto masks, per-strategy frontiers, the max-interactivity ratio,
budget ratios, the TTL ratio at equal batch and the HOP-B loss curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helix.search_points import Points

BASELINE_STRATEGIES = ("tp", "tp_pp", "dp_ep", "medha")
# Budgets and throughput levels compare with this relative slack: the same configuration evaluated
# under two overlap modes can differ in the last bit, which must not count as a loss.
REL_TOL = 1e-9


# ---------------------------------------------------------------- frontiers


def pareto_mask(x, y) -> np.ndarray:
    """Points not dominated in (x, y), both maximised. Of exact duplicates the first is kept.

    A point is dominated when another is >= in both and > in one. Sort by x descending (y descending
    within equal x); a point survives when its y beats every point before it.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.zeros(len(x), dtype=bool)
    if len(x) == 0:
        return keep
    order = np.lexsort((np.arange(len(x)), -y, -x))
    ys = y[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    keep[order[ys > best_before]] = True
    return keep


def frontier(points: Points) -> Points:
    """Feasible non-dominated points in (tokens/s/user, tokens/s/GPU), sorted by tokens/s/user."""
    feas = points.take(points.feasible)
    front = feas.take(pareto_mask(feas.tokens_per_s_per_user, feas.tokens_per_s_per_gpu))
    return front.take(np.argsort(front.tokens_per_s_per_user, kind="stable"))


def frontiers(points: Points, strategies=None) -> dict[str, Points]:
    """Frontier per strategy, of the baseline (non-Helix union) and global (labelled by strategy column)."""
    present = strategies or tuple(dict.fromkeys(points.strategy.tolist()))
    out = {s: frontier(points.of(s)) for s in present}
    base = [s for s in present if s in BASELINE_STRATEGIES]
    if base:
        out["baseline"] = frontier(points.of(*base))
    out["global"] = frontier(points)
    return out


# ---------------------------------------------------------------- claim metrics


def max_interactivity_ratio(helix_x, baseline_x) -> float:
    """Best tokens/s/user of Helix / best of the baseline (feasible points only)."""
    hx, bx = np.asarray(helix_x), np.asarray(baseline_x)
    if hx.size == 0 or bx.size == 0:
        return float("nan")
    return float(hx.max() / bx.max())


def best_within_budget(ttl_s, value, budgets_s) -> np.ndarray:
    """For each budget T: max ``value`` over points with TTL <= T (NaN where no point qualifies)."""
    ttl_s, value = np.asarray(ttl_s, dtype=np.float64), np.asarray(value, dtype=np.float64)
    budgets_s = np.asarray(budgets_s, dtype=np.float64)
    if ttl_s.size == 0:
        return np.full(budgets_s.shape, np.nan)
    order = np.argsort(ttl_s, kind="stable")
    running = np.maximum.accumulate(value[order])
    idx = np.searchsorted(ttl_s[order], budgets_s * (1 + REL_TOL), side="right") - 1
    return np.where(idx >= 0, running[np.maximum(idx, 0)], np.nan)


@dataclass(frozen=True)
class BudgetRatio:
    budgets_s: np.ndarray
    helix: np.ndarray
    baseline: np.ndarray
    ratio: np.ndarray
    max_ratio: float
    at_budget_s: float


def budget_ratio(helix_ttl, helix_value, baseline_ttl, baseline_value) -> BudgetRatio:
    """helix_best(T) / baseline_best(T) over budgets where both sides are feasible, and its maximum."""
    budgets = np.unique(np.concatenate([np.asarray(helix_ttl, dtype=np.float64),
                                        np.asarray(baseline_ttl, dtype=np.float64)]))
    h = best_within_budget(helix_ttl, helix_value, budgets)
    b = best_within_budget(baseline_ttl, baseline_value, budgets)
    both = ~np.isnan(h) & ~np.isnan(b)
    budgets, h, b = budgets[both], h[both], b[both]
    ratio = h / b
    if ratio.size == 0:
        return BudgetRatio(budgets, h, b, ratio, float("nan"), float("nan"))
    i = int(np.argmax(ratio))
    return BudgetRatio(budgets, h, b, ratio, float(ratio[i]), float(budgets[i]))


def interactivity_at_throughput(x, y, levels) -> np.ndarray:
    """Tokens/s/user of the (x, y) Pareto frontier at each tokens/s/GPU level, linearly interpolated
    between frontier points; the frontier's best interactivity below its lowest throughput, NaN above
    its highest."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    levels = np.asarray(levels, dtype=np.float64)
    if x.size == 0:
        return np.full(levels.shape, np.nan)
    keep = pareto_mask(x, y)
    order = np.argsort(y[keep], kind="stable")
    fy, fx = y[keep][order], x[keep][order]
    out = np.interp(levels, fy, fx, left=fx[0], right=np.nan)
    return np.where(levels <= fy[-1] * (1 + REL_TOL), np.where(np.isnan(out), fx[-1], out), np.nan)


@dataclass(frozen=True)
class EqualBatchRatio:
    users: np.ndarray
    helix_ttl_s: np.ndarray
    baseline_ttl_s: np.ndarray
    ratio: np.ndarray
    max_ratio: float
    at_users: float


def _lowest_ttl_per_users(users, ttl_s) -> tuple[np.ndarray, np.ndarray]:
    u, inverse = np.unique(np.asarray(users), return_inverse=True)
    best = np.full(u.shape, np.inf)
    np.minimum.at(best, inverse, np.asarray(ttl_s, dtype=np.float64))
    return u, best


def ttl_ratio_at_equal_users(helix_users, helix_ttl, baseline_users, baseline_ttl) -> EqualBatchRatio:
    """baseline's lowest TTL / Helix's lowest TTL at each number of users both sides serve, and its maximum:
    the paper's "reduces TTL by up to X at fixed batch sizes" (= the tokens/s/user ratio at equal batch)."""
    hu, ht = _lowest_ttl_per_users(helix_users, helix_ttl)
    bu, bt = _lowest_ttl_per_users(baseline_users, baseline_ttl)
    users, hi, bi = np.intersect1d(hu, bu, return_indices=True)
    ratio = bt[bi] / ht[hi]
    if ratio.size == 0:
        return EqualBatchRatio(users, ht[hi], bt[bi], ratio, float("nan"), float("nan"))
    i = int(np.argmax(ratio))
    return EqualBatchRatio(users, ht[hi], bt[bi], ratio, float(ratio[i]), float(users[i]))


@dataclass(frozen=True)
class LossCurve:
    throughput: np.ndarray
    on: np.ndarray
    off: np.ndarray
    loss: np.ndarray
    max_loss: float
    at_throughput: float


def hopb_loss(on_x, on_y, off_x, off_y) -> LossCurve:
    """1 - x_off(y) / x_on(y) over the common throughput range, and its maximum (HOP-B loss)."""
    on_y, off_y = np.asarray(on_y, dtype=np.float64), np.asarray(off_y, dtype=np.float64)
    if on_y.size == 0 or off_y.size == 0:
        empty = np.zeros(0)
        return LossCurve(empty, empty, empty, empty, float("nan"), float("nan"))
    top = min(on_y.max(), off_y.max())
    levels = np.unique(np.concatenate([on_y, off_y]))
    levels = levels[levels <= top]
    x_on = interactivity_at_throughput(on_x, on_y, levels)
    x_off = interactivity_at_throughput(off_x, off_y, levels)
    loss = 1.0 - x_off / x_on
    i = int(np.argmax(loss))
    return LossCurve(levels, x_on, x_off, loss, float(loss[i]), float(levels[i]))


@dataclass(frozen=True)
class Claims:
    """The headline comparisons of one model's sweep (Helix vs baseline)."""

    max_interactivity_ratio: float
    throughput: BudgetRatio
    batch: BudgetRatio
    equal_batch: EqualBatchRatio


def helix_vs_baseline(points: Points, baseline=BASELINE_STRATEGIES) -> Claims:
    """Claim metrics from the feasible points of one sweep (frontiers suffice; the values are identical)."""
    feas = points.take(points.feasible)
    h, b = feas.of("helix"), feas.of(*baseline)
    return Claims(
        max_interactivity_ratio=max_interactivity_ratio(h.tokens_per_s_per_user, b.tokens_per_s_per_user),
        throughput=budget_ratio(h.ttl_s, h.tokens_per_s_per_gpu, b.ttl_s, b.tokens_per_s_per_gpu),
        batch=budget_ratio(h.ttl_s, h.users, b.ttl_s, b.users),
        equal_batch=ttl_ratio_at_equal_users(h.users, h.ttl_s, b.users, b.ttl_s),
    )
