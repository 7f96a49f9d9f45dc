"""What every experiment shares: one global parameter set, cached sweeps, and the claim computation.

One hardware preset (``gb200-nvl72``), FP4 for every tensor class and 1M = 10^6 tokens serve every
experiment [paper §3.1]; nothing is tuned per experiment. ``--quick`` shrinks only the grid (fewer
GPUs, fewer variants) so tests run fast; the formulas and parameters are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helix import search
from helix.specs import load_hardware, load_model
from helix.specs.precision import PrecisionSpec

HARDWARE = "gb200-nvl72"
CONTEXT_1M = 10**6  # 1M = 10^6 tokens (the sensitivity study shows 2^20)
DSR1 = "deepseek-r1"
LLAMA_PAPER_F = "llama-405b-paper"  # F = 65,536 as the paper's Fig. 1 / App. A state
LLAMA_REAL_F = "llama-3.1-405b"  # F = 53,248 as released
DSR1_STRATEGIES = ("tp", "tp_pp", "dp_ep", "medha", "helix")
LLAMA_STRATEGIES = ("tp", "tp_pp", "medha", "helix")


@dataclass
class Context:
    out: Path
    quick: bool = False
    hw: object = None
    precision: PrecisionSpec = field(default_factory=PrecisionSpec)
    progress: bool = False
    _sweeps: dict = field(default_factory=dict)
    points_evaluated: dict = field(default_factory=dict)  # model -> points over every sweep run

    def __post_init__(self) -> None:
        if self.hw is None:
            self.hw = load_hardware(HARDWARE)

    @property
    def max_gpus(self) -> int:
        return 16 if self.quick else 64

    def model(self, name: str):
        return load_model(name)

    def sweep(self, name: str, strategies, context: int = CONTEXT_1M, overlap: str = "auto", hw=None,
              precision=None, expert_imbalance: float = 1.0, cache: bool = True,
              options: dict | None = None) -> search.Sweep:
        """A sweep, cached by default (experiments share the 1M sweeps of both models); ``options`` go to
        every point's step (helix.step.evaluate, e.g. fused_combine)."""
        options = options or {}
        hw = hw or self.hw
        precision = precision or self.precision
        # the op model is not part of HardwareSpec's equality: a variant that scales only it must not hit the cache
        key = (name, tuple(strategies), context, overlap, hw, id(hw.op_model), precision, expert_imbalance,
               self.max_gpus, tuple(sorted(options.items())))
        if key in self._sweeps:
            return self._sweeps[key]
        sw = search.sweep(self.model(name), hw, context, strategies=strategies, max_gpus=self.max_gpus,
                          precision=precision, overlap=overlap, expert_imbalance=expert_imbalance,
                          progress=self.progress, **options)
        self.points_evaluated[name] = self.points_evaluated.get(name, 0) + len(sw.points)
        if cache:
            self._sweeps[key] = sw
        return sw


def strategies_for(name: str) -> tuple[str, ...]:
    return DSR1_STRATEGIES if name == DSR1 else LLAMA_STRATEGIES


@dataclass(frozen=True)
class Wording:
    """How the paper words one model's claims: ``interactivity`` "equal_batch" (TTL at fixed batch sizes)
    or "max" (maximum achievable tokens/s/user); ``budget_baseline`` the strategies the budget ratios
    (throughput, batch) are against."""

    interactivity: str
    budget_baseline: tuple[str, ...]


# DeepSeek-R1: "reduces TTL by up to 1.5x at fixed batch sizes and supports up to 32x larger batches under
# the same latency budget" against the best baseline [paper Abstract, §3.2]; Llama-405B: "1.13x maximum
# achievable interactivity" and "4x higher throughput and batch capacity vs. TP sharding" [paper §3.2].
WORDING = {DSR1: Wording("equal_batch", search.BASELINE_STRATEGIES), LLAMA_PAPER_F: Wording("max", ("tp",)),
           LLAMA_REAL_F: Wording("max", ("tp",))}


@dataclass(frozen=True)
class ModelClaims:
    """The headline numbers of one model as the paper words them (WORDING; definitions in helix.search),
    and the comparisons beside them."""

    max_interactivity_ratio: float
    throughput_ratio: float
    max_batch_ratio: float
    hopb_off_interactivity_loss: float
    hopb_off_interactivity_loss_per_request: float
    claims: search.Claims  # Helix vs the union of baselines
    budget: search.Claims  # Helix vs the baseline the budget claims are worded against
    hopb: search.LossCurve  # OFF: one batched exchange per layer
    hopb_per_request: search.LossCurve  # OFF: one exchange per request (the paper's Fig. 3)
    wording: Wording


def _loss(on: search.Points, off: search.Points) -> search.LossCurve:
    h_on, h_off = search.frontier(on), search.frontier(off)
    return search.hopb_loss(h_on.tokens_per_s_per_user, h_on.tokens_per_s_per_gpu, h_off.tokens_per_s_per_user,
                            h_off.tokens_per_s_per_gpu)


def model_claims(ctx: Context, name: str, context: int = CONTEXT_1M, hw=None, precision=None,
                 cache: bool = True, options: dict | None = None) -> ModelClaims:
    """Helix vs the baselines, and HOP-B ON vs both OFF readings, from the model's sweeps."""
    kw = {"hw": hw, "precision": precision, "cache": cache, "options": options}
    on = ctx.sweep(name, strategies_for(name), context, **kw)
    off = ctx.sweep(name, ("helix",), context, overlap="serial", **kw)
    per_request = ctx.sweep(name, ("helix",), context, overlap="per_request", **kw)
    wording = WORDING[name]
    union = search.helix_vs_baseline(on.points)
    budget = search.helix_vs_baseline(on.points, baseline=wording.budget_baseline)
    interactivity = (union.equal_batch.max_ratio if wording.interactivity == "equal_batch"
                     else union.max_interactivity_ratio)
    helix = on.points.of("helix")
    loss, loss_req = _loss(helix, off.points), _loss(helix, per_request.points)
    return ModelClaims(interactivity, budget.throughput.max_ratio, budget.batch.max_ratio, loss.max_loss,
                       loss_req.max_loss, union, budget, loss, loss_req, wording)


def baseline_norm(fronts: dict[str, search.Points]) -> tuple[float, float]:
    """The paper normalises both axes to the baseline: its best tokens/s/user and best tokens/s/GPU."""
    b = fronts["baseline"]
    return float(np.max(b.tokens_per_s_per_user)), float(np.max(b.tokens_per_s_per_gpu))


def best_layout_at(ctx: Context, name: str, strategy: str, batch: int, context: int, overlap: str = "auto"):
    """The feasible layout of ``strategy`` with the lowest TTL at a fixed batch: (Points of one row, StepResult)."""
    model = ctx.model(name)
    lay = search.enumerate_layouts(model, strategy, ctx.max_gpus)
    if len(lay["tpa"]) == 0:
        return None, None
    pts, _ = search.evaluate_points(model, ctx.hw, ctx.precision, strategy, lay,
                                    np.full(len(lay["tpa"]), batch), context, overlap)
    ttl = np.where(pts.feasible, pts.ttl_s, np.inf)
    i = int(np.argmin(ttl))
    if not np.isfinite(ttl[i]):
        return None, None
    row = pts.take([i])
    return row, search.resimulate(model, ctx.hw, ctx.precision, row, context, overlap)[strategy][1]


def fig_path(ctx: Context, name: str) -> Path:
    return ctx.out / name
