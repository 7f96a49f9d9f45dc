"""Search: every valid layout of every strategy x every batch size, Pareto frontiers, claim metrics.

A point is (layout, batch). The grid spans N_total = N x PP in 1..max_gpus GPUs, every valid
factorisation per strategy (the layout rules below), and one batch grid (``batch_grid``) shared by every
layout: all integers to 128, then 16 points per octave, up to the largest batch any layout can hold
at this context (the memory limit). Points that fail divisibility (``check_layout_for_model``) are
never enumerated, nor (unless ``allow_uneven``) layouts whose widths do not divide evenly; memory-infeasible
points are counted by reason, and their timing columns are NaN (the step is timed only where it fits:
a TTL for a configuration that cannot hold its weights or KV is no plan). Each strategy is one
vectorised ``evaluate`` call (chunked only to report progress).

Strategy grids (N = GPUs per stage, PP stages, N x PP <= max_gpus):
  tp      TPA = N, PP = 1; dense: TPF = N; MoE: TPF x EP = N for every EP dividing N (TP8 EP8 ...)
  tp_pp   the same with PP >= 2
  dp_ep   DP = N, TPF x EP = N for every TPF dividing N (MoE only), any PP
  medha   KVP x TP = N, TP divides the cache heads (TP tied between attention and FFN), any PP
  helix   TPA x KVP x DP = N = TPF x EP, TPA divides the cache heads, EP = 1 for dense, any PP

Claims, defined once here and quoted by the report. "Baseline" is the union of the
non-Helix strategies; only feasible points count; users = batch x PP (requests in flight).
  max interactivity ratio   max tokens/s/user of Helix / max tokens/s/user of the baseline
  TTL ratio at equal batch  at each number of users both sides serve, the baseline's lowest TTL / Helix's
                            lowest TTL; its maximum over users (the paper's "reduces TTL by up to X at
                            fixed batch sizes"; the tokens/s/user ratio at equal batch)
  budget ratio (value v)    for a TTL budget T, best(T) = max v over points with TTL <= T; the ratio
                            helix_best(T) / baseline_best(T), maximised over the budgets where both
                            sides have a point (v = tokens/s/GPU: throughput ratio; v = users: batch
                            ratio). Budgets are the TTLs of both sides' points, where the curves step.
  HOP-B loss                each side's frontier as the piecewise-linear curve the paper plots:
                            x(y) = tokens/s/user at tokens/s/GPU = y, interpolated between frontier
                            points (flat below the curve's lowest throughput); loss(y) = 1 - x_off(y) /
                            x_on(y), maximised over the common throughput range (levels: both sides'
                            frontier throughputs). A step function would turn a 1e-5 throughput
                            difference between two nearly equal points into a jump to the next point.
                            OFF is one batched exchange per layer (overlap "serial") or, as the paper's
                            Fig. 3 draws it, one exchange per request (overlap "per_request").
  Comparisons of TTL with a budget and of throughput with a level allow a relative 1e-9 (REL_TOL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from helix.cost import memory
from helix.errors import HelixInputError
from helix.layout import STRATEGIES, check_redundant_experts
from helix.progress import bar
from helix.search_grid import (  # noqa: F401  (the search API: helix.search.enumerate_layouts, ...)
    DENSE_BATCH_LIMIT,
    LAYOUT_FIELDS,
    ORDER_FIELDS,
    POINTS_PER_OCTAVE,
    _candidates,
    batch_grid,
    check_sweep_memory,
    enumerate_layouts,
    rank_orders,
)
from helix.search_metrics import (  # noqa: F401  (the search API: helix.search.frontier, ...)
    BASELINE_STRATEGIES,
    REL_TOL,
    BudgetRatio,
    Claims,
    EqualBatchRatio,
    LossCurve,
    best_within_budget,
    budget_ratio,
    frontier,
    frontiers,
    helix_vs_baseline,
    hopb_loss,
    interactivity_at_throughput,
    max_interactivity_ratio,
    pareto_mask,
    ttl_ratio_at_equal_users,
)
from helix.search_points import Points
from helix.specs.precision import PrecisionSpec
from helix.step import evaluate

PROGRESS_CHUNK = 100_000  # points per evaluate call when reporting progress


def max_batch_per_layout(model, hw, precision, strategy: str, layouts: dict[str, np.ndarray], context_tokens: int,
                         redundant_experts: int = 0):
    """Largest batch (per micro-batch) each layout holds in usable HBM; 0 when the weights alone do not fit."""
    tpa, kvp, dp, tpf, ep, pp = (layouts[f] for f in LAYOUT_FIELDS)
    weights = memory.weight_bytes_per_gpu(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, redundant_experts)
    kv_one = memory.kv_bytes_per_gpu(model, precision, tpa, kvp, dp, pp, dp, context_tokens)  # one request per DP rank
    per_rank = np.floor(np.maximum(hw.usable_hbm_bytes - weights, 0.0) / kv_one).astype(np.int64)
    return per_rank * dp


def evaluate_points(model, hw, precision, strategy: str, layouts: dict[str, np.ndarray], batch: np.ndarray,
                    context_tokens: int, overlap: str = "auto", expert_imbalance: float = 1.0,
                    feasible_only: bool = False, **options):
    """One vectorised ``evaluate`` over aligned layout and batch arrays: (Points, StepResult).

    ``feasible_only`` times only the points that fit in memory (the others keep their memory columns and
    reason, with NaN timing, and the StepResult is that of the feasible subset); ``options`` go to
    ``evaluate`` (redundant_experts, tbo, mtp_tokens, mtp_acceptance)."""
    n = len(batch)
    batch = np.asarray(batch, dtype=np.int64)
    fields_ = [layouts[f] for f in LAYOUT_FIELDS]
    w = memory.weight_bytes_per_gpu(model, precision, strategy, *fields_, options.get("redundant_experts", 0))
    kv = memory.kv_bytes_per_gpu(model, precision, *(layouts[f] for f in ("tpa", "kvp", "dp", "pp")), batch,
                                 context_tokens)
    feasible, code = memory.feasibility(w, kv, hw, batch, layouts["dp"])
    sel = feasible if feasible_only else np.ones(n, dtype=bool)
    orders = {f: np.asarray(layouts[f]) if f in layouts else np.zeros(n, dtype=np.int64) for f in ORDER_FIELDS}
    r = evaluate(model, hw, precision, strategy, *(f[sel] for f in fields_), batch[sel], context_tokens,
                 overlap=overlap, expert_imbalance=expert_imbalance, **{f: v[sel] for f, v in orders.items()},
                 **options)
    timing = {}
    for name in ("ttl_s", "tokens_per_s_per_user", "tokens_per_s_per_gpu"):
        col = np.full(n, np.nan)
        col[sel] = getattr(r, name)
        timing[name] = col
    pts = Points(strategy=np.full(n, strategy, dtype=object), **{f: layouts[f] for f in LAYOUT_FIELDS},
                 batch=batch, num_gpus=layouts["tpa"] * layouts["kvp"] * layouts["dp"] * layouts["pp"],
                 **timing, memory_per_gpu_bytes=w + kv, weight_bytes_per_gpu=w + 0 * kv, kv_bytes_per_gpu=kv,
                 feasible=feasible, reason_code=code, **orders)
    return pts, r


def resimulate(model, hw, precision, pts: Points, context_tokens: int, overlap: str = "auto",
               expert_imbalance: float = 1.0, **options) -> dict[str, object]:
    """Full StepResult (with breakdown) for a few points, one ``evaluate`` call per strategy present."""
    out = {}
    for s in dict.fromkeys(pts.strategy.tolist()):
        sel = pts.of(s)
        out[s] = (sel, evaluate_points(model, hw, precision, s,
                                       {f: getattr(sel, f) for f in LAYOUT_FIELDS + ORDER_FIELDS},
                                       sel.batch, context_tokens, overlap, expert_imbalance,
                                       **_options_for(s, options))[1])
    return out


def _options_for(strategy: str, options: dict) -> dict:
    """Two-batch overlap is a DP+EP schedule: the other strategies run without it."""
    return {k: v for k, v in options.items() if not (k == "tbo" and strategy != "dp_ep")}


@dataclass(frozen=True)
class Sweep:
    model: str
    hardware: str
    context_tokens: int
    max_gpus: int
    strategies: tuple[str, ...]
    overlap: str
    batch_grid: np.ndarray
    layouts_per_strategy: dict[str, int]
    points: Points
    wall_s: float

    @property
    def feasible(self) -> Points:
        return self.points.take(self.points.feasible)

    def counts(self) -> dict:
        """Points evaluated, feasible, and dropped per named reason, overall and per strategy."""
        def tally(p: Points) -> dict:
            reasons = {name: int(np.sum(p.reason_code == code)) for code, name in enumerate(memory.REASONS) if code}
            return {"evaluated": len(p), "feasible": int(np.sum(p.feasible)), "dropped": reasons}
        out = tally(self.points)
        out["per_strategy"] = {s: dict(tally(self.points.of(s)), layouts=self.layouts_per_strategy[s])
                               for s in self.strategies}
        return out


def check_strategies(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    names = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    bad = [s for s in names if s not in STRATEGIES]
    if bad or not names:
        raise HelixInputError("--strategies", f"unknown {bad[0] if bad else text!r}; allowed: {', '.join(STRATEGIES)}")
    return tuple(dict.fromkeys(names))


def sweep(model, hw, context_tokens: int, *, strategies=STRATEGIES, max_gpus: int = 64,
          precision: PrecisionSpec | None = None, overlap: str = "auto", expert_imbalance: float = 1.0,
          max_batch: int | None = None, progress: bool = False, allow_uneven: bool = False,
          redundant_experts: int = 0, gpu_counts=None, **options) -> Sweep:
    """Evaluate every valid (layout, batch) point of each strategy; one vectorised call per strategy.

    ``max_batch`` caps the batch grid (default: the memory limit of the best-holding layout).
    ``progress`` draws a progress bar on stderr when it is a terminal (``helix.progress``).
    ``allow_uneven`` keeps layouts whose widths do not divide evenly; ``redundant_experts``, ``tbo``
    (DP+EP only), ``mtp_tokens`` and ``mtp_acceptance`` go to every point's step (helix.step.evaluate).
    ``gpu_counts`` (a set of totals N x PP, each <= max_gpus) keeps only the layouts on exactly those
    GPU counts.
    """
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or not 1 <= max_gpus <= 4096:
        raise HelixInputError("--max-gpus", f"must be an integer in 1..4096, got {max_gpus!r}")
    strategies = check_strategies(strategies)
    check_redundant_experts(model, redundant_experts)
    precision = precision or PrecisionSpec()
    t0 = time.perf_counter()
    layouts = {s: enumerate_layouts(model, s, max_gpus, allow_uneven, redundant_experts, gpu_counts,
                                    hw.scale_up_domain_gpus) for s in strategies}
    options["redundant_experts"] = redundant_experts
    if max_batch is None:
        limits = [max_batch_per_layout(model, hw, precision, s, lay, context_tokens, redundant_experts)
                  for s, lay in layouts.items()]
        max_batch = int(max((int(lim.max()) for lim in limits if lim.size), default=1))
    grid = batch_grid(max_batch)
    total = sum(len(lay["tpa"]) for lay in layouts.values()) * len(grid)
    check_sweep_memory(total)
    parts = []
    shown = bar(total, f"sweep {model.name}", unit="points", quiet=not progress)
    for s, lay in layouts.items():
        n_layouts = len(lay["tpa"])
        if n_layouts == 0:
            continue
        # layout-major: every layout repeated over the whole batch grid
        rep = {f: np.repeat(v, len(grid)) for f, v in lay.items()}
        batch = np.tile(grid, n_layouts)
        step = PROGRESS_CHUNK if progress else len(batch)
        for lo in range(0, len(batch), step):
            sl = slice(lo, lo + step)
            pts, _ = evaluate_points(model, hw, precision, s, {f: v[sl] for f, v in rep.items()}, batch[sl],
                                     context_tokens, overlap, expert_imbalance, feasible_only=True,
                                     **_options_for(s, options))
            parts.append(pts)
            shown.set_postfix_str(s, refresh=False)
            shown.update(len(batch[sl]))
    shown.close()
    points = Points.concat(parts) if parts else Points.empty()
    return Sweep(model=model.name, hardware=hw.name, context_tokens=int(context_tokens), max_gpus=max_gpus,
                 strategies=strategies, overlap=overlap, batch_grid=grid,
                 layouts_per_strategy={s: len(lay["tpa"]) for s, lay in layouts.items()}, points=points,
                 wall_s=time.perf_counter() - t0)
