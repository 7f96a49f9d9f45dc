"""Search: every valid layout of every strategy x every batch size, Pareto frontiers, claim metrics.

A point is (layout, batch). The grid spans N_total = N x PP in 1..max_gpus GPUs, every valid
factorisation per strategy (design §4, §6), and one batch grid (``batch_grid``) shared by every
layout: all integers to 128, then 16 points per octave, up to the largest batch any layout can hold
at this context (the memory limit). Points that fail divisibility (``check_layout_for_model``) are
never enumerated; memory-infeasible points are evaluated and counted by reason. Each strategy is one
vectorised ``evaluate`` call (chunked only to report progress).

Strategy grids (N = GPUs per stage, PP stages, N x PP <= max_gpus):
  tp      TPA = TPF = N, PP = 1
  tp_pp   TPA = TPF = N, PP >= 2
  dp_ep   DP = EP = N (MoE only), any PP
  medha   KVP x TP = N, TP divides the cache heads (TP tied between attention and FFN), any PP
  helix   TPA x KVP x DP = N = TPF x EP, TPA divides the cache heads, EP = 1 for dense, any PP

Claims, defined once here and quoted by the report (design §6). "Baseline" is the union of the
non-Helix strategies; only feasible points count; users = batch x PP (requests in flight).
  max interactivity ratio   max tokens/s/user of Helix / max tokens/s/user of the baseline
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
  Comparisons of TTL with a budget and of throughput with a level allow a relative 1e-9 (REL_TOL).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields

import numpy as np

from helix.cost import memory
from helix.errors import HelixInputError
from helix.layout import STRATEGIES, Layout, check_layout_for_model
from helix.specs.precision import PrecisionSpec
from helix.step import evaluate

BASELINE_STRATEGIES = ("tp", "tp_pp", "dp_ep", "medha")
DENSE_BATCH_LIMIT = 128  # every integer batch up to here
POINTS_PER_OCTAVE = 16  # then a geometric grid
PROGRESS_CHUNK = 100_000  # points per evaluate call when reporting progress
# Budgets and throughput levels compare with this relative slack: the same configuration evaluated
# under two overlap modes can differ in the last bit, which must not count as a loss.
REL_TOL = 1e-9


# ---------------------------------------------------------------- grids


def batch_grid(max_batch: int) -> np.ndarray:
    """Batch sizes 1..max_batch: every integer to 128, then 16 per octave (powers of two included)."""
    max_batch = max(int(max_batch), 1)
    dense = np.arange(1, min(max_batch, DENSE_BATCH_LIMIT) + 1)
    if max_batch <= DENSE_BATCH_LIMIT:
        return dense
    octaves = np.log2(max_batch / DENSE_BATCH_LIMIT)
    steps = np.arange(1, int(np.ceil(octaves * POINTS_PER_OCTAVE)) + 1)
    geometric = np.round(DENSE_BATCH_LIMIT * 2.0 ** (steps / POINTS_PER_OCTAVE)).astype(np.int64)
    return np.unique(np.concatenate([dense, np.minimum(geometric, max_batch), [max_batch]]))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _candidates(model, strategy: str, max_gpus: int):
    """Layouts of one strategy before the model's divisibility checks."""
    for pp in range(1, max_gpus + 1):
        for n in range(1, max_gpus // pp + 1):
            if strategy == "tp" and pp == 1:
                yield Layout.tp(n)
            elif strategy == "tp_pp" and pp >= 2:
                yield Layout.tp_pp(n, pp)
            elif strategy == "dp_ep" and model.is_moe:
                yield Layout.dp_ep(n, pp)
            elif strategy == "medha":
                for tp in _divisors(n):
                    yield Layout.medha(n // tp, tp, pp)
            elif strategy == "helix":
                for tpa in _divisors(n):
                    for dp in _divisors(n // tpa):
                        for ep in _divisors(n) if model.is_moe else (1,):
                            yield Layout.helix(kvp=n // tpa // dp, tpa=tpa, dp=dp, ep=ep, pp=pp)


LAYOUT_FIELDS = ("tpa", "kvp", "dp", "tpf", "ep", "pp")


def enumerate_layouts(model, strategy: str, max_gpus: int) -> dict[str, np.ndarray]:
    """Every layout of ``strategy`` on 1..max_gpus GPUs that passes ``check_layout_for_model``."""
    rows = []
    for layout in _candidates(model, strategy, max_gpus):
        try:
            check_layout_for_model(layout, model)
        except HelixInputError:
            continue
        rows.append(tuple(getattr(layout, f) for f in LAYOUT_FIELDS))
    table = np.array(rows, dtype=np.int64).reshape(-1, len(LAYOUT_FIELDS))
    return {f: table[:, i] for i, f in enumerate(LAYOUT_FIELDS)}


def max_batch_per_layout(model, hw, precision, strategy: str, layouts: dict[str, np.ndarray], context_tokens: int):
    """Largest batch (per micro-batch) each layout holds in usable HBM; 0 when the weights alone do not fit."""
    tpa, kvp, dp, tpf, ep, pp = (layouts[f] for f in LAYOUT_FIELDS)
    weights = memory.weight_bytes_per_gpu(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp)
    kv_one = memory.kv_bytes_per_gpu(model, precision, tpa, kvp, dp, pp, dp, context_tokens)  # one request per DP rank
    per_rank = np.floor(np.maximum(hw.usable_hbm_bytes - weights, 0.0) / kv_one).astype(np.int64)
    return per_rank * dp


# ---------------------------------------------------------------- points


@dataclass(frozen=True)
class Points:
    """Columns of (layout, batch) points; every field is an array of the same length."""

    strategy: np.ndarray
    tpa: np.ndarray
    kvp: np.ndarray
    dp: np.ndarray
    tpf: np.ndarray
    ep: np.ndarray
    pp: np.ndarray
    batch: np.ndarray
    num_gpus: np.ndarray
    ttl_s: np.ndarray
    tokens_per_s_per_user: np.ndarray
    tokens_per_s_per_gpu: np.ndarray
    memory_per_gpu_bytes: np.ndarray
    weight_bytes_per_gpu: np.ndarray
    kv_bytes_per_gpu: np.ndarray
    feasible: np.ndarray
    reason_code: np.ndarray

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def users(self) -> np.ndarray:
        """Concurrent requests: batch x PP (PP micro-batches in flight)."""
        return self.batch * self.pp

    def take(self, index) -> Points:
        return Points(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Points]) -> Points:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls) -> Points:
        return cls(**{f.name: np.zeros(0, dtype=object if f.name == "strategy" else np.float64)
                      for f in fields(cls)})

    def of(self, *strategies: str) -> Points:
        return self.take(np.isin(self.strategy, strategies))

    def layout(self, i: int) -> Layout:
        return Layout(**{f: int(getattr(self, f)[i]) for f in LAYOUT_FIELDS}, strategy=str(self.strategy[i]))

    def describe(self, i: int) -> str:
        return f"{self.layout(i).describe()} B={int(self.batch[i])}"


def evaluate_points(model, hw, precision, strategy: str, layouts: dict[str, np.ndarray], batch: np.ndarray,
                    context_tokens: int, overlap: str = "auto", expert_imbalance: float = 1.0):
    """One vectorised ``evaluate`` over aligned layout and batch arrays: (Points, StepResult)."""
    r = evaluate(model, hw, precision, strategy, *(layouts[f] for f in LAYOUT_FIELDS), batch, context_tokens,
                 overlap=overlap, expert_imbalance=expert_imbalance)
    n = len(batch)
    pts = Points(strategy=np.full(n, strategy, dtype=object), **{f: layouts[f] for f in LAYOUT_FIELDS},
                 batch=np.asarray(batch, dtype=np.int64), num_gpus=np.broadcast_to(r.num_gpus, n).copy(),
                 ttl_s=r.ttl_s, tokens_per_s_per_user=r.tokens_per_s_per_user,
                 tokens_per_s_per_gpu=r.tokens_per_s_per_gpu, memory_per_gpu_bytes=r.memory_per_gpu_bytes,
                 weight_bytes_per_gpu=r.weight_bytes_per_gpu, kv_bytes_per_gpu=r.kv_bytes_per_gpu,
                 feasible=r.feasible, reason_code=r.reason_code)
    return pts, r


def resimulate(model, hw, precision, pts: Points, context_tokens: int, overlap: str = "auto",
               expert_imbalance: float = 1.0) -> dict[str, object]:
    """Full StepResult (with breakdown) for a few points, one ``evaluate`` call per strategy present."""
    out = {}
    for s in dict.fromkeys(pts.strategy.tolist()):
        sel = pts.of(s)
        out[s] = (sel, evaluate_points(model, hw, precision, s, {f: getattr(sel, f) for f in LAYOUT_FIELDS},
                                       sel.batch, context_tokens, overlap, expert_imbalance)[1])
    return out


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
          max_batch: int | None = None, progress: bool = False) -> Sweep:
    """Evaluate every valid (layout, batch) point of each strategy; one vectorised call per strategy.

    ``max_batch`` caps the batch grid (default: the memory limit of the best-holding layout).
    ``progress`` writes a one-line progress counter to stderr.
    """
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or not 1 <= max_gpus <= 4096:
        raise HelixInputError("--max-gpus", f"must be an integer in 1..4096, got {max_gpus!r}")
    strategies = check_strategies(strategies)
    precision = precision or PrecisionSpec()
    t0 = time.perf_counter()
    layouts = {s: enumerate_layouts(model, s, max_gpus) for s in strategies}
    if max_batch is None:
        limits = [max_batch_per_layout(model, hw, precision, s, lay, context_tokens) for s, lay in layouts.items()]
        max_batch = int(max((int(lim.max()) for lim in limits if lim.size), default=1))
    grid = batch_grid(max_batch)
    total = sum(len(lay["tpa"]) for lay in layouts.values()) * len(grid)
    parts, done = [], 0
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
                                     context_tokens, overlap, expert_imbalance)
            parts.append(pts)
            done += len(pts)
            if progress:
                print(f"\rsweep {model.name}: {done:,}/{total:,} points ({s})", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    points = Points.concat(parts) if parts else Points.empty()
    return Sweep(model=model.name, hardware=hw.name, context_tokens=int(context_tokens), max_gpus=max_gpus,
                 strategies=strategies, overlap=overlap, batch_grid=grid,
                 layouts_per_strategy={s: len(lay["tpa"]) for s, lay in layouts.items()}, points=points,
                 wall_s=time.perf_counter() - t0)


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


def helix_vs_baseline(points: Points, baseline=BASELINE_STRATEGIES) -> Claims:
    """Claim metrics from the feasible points of one sweep (frontiers suffice; the values are identical)."""
    feas = points.take(points.feasible)
    h, b = feas.of("helix"), feas.of(*baseline)
    return Claims(
        max_interactivity_ratio=max_interactivity_ratio(h.tokens_per_s_per_user, b.tokens_per_s_per_user),
        throughput=budget_ratio(h.ttl_s, h.tokens_per_s_per_gpu, b.ttl_s, b.tokens_per_s_per_gpu),
        batch=budget_ratio(h.ttl_s, h.users, b.ttl_s, b.users),
    )
