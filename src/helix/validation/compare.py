"""The comparison: measured steps reduced over ranks, the simulator's prediction of the same points, and
the two matched term by term. Pure (numpy and the simulator): the runtime's rows come in as dicts.

Error = (predicted - measured) / measured, per point and per term; helix.validation.tables writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from helix.cost import collectives
from helix.cost.messages import step_messages
from helix.layout import Layout
from helix.step import simulate
from helix.validation import fit, launches
from helix.validation.grid import GridPoint
from helix.validation.launches import FP32
from helix.validation.timing import last_arrival

# Simulator breakdown term -> runtime phases that implement it.
TERM_PHASES = {
    "qkv_projection": ("qkv_projection",),
    "attention": ("local_attention",),
    "combine": ("combine_partial_attention",),
    "o_projection": ("o_projection",),
    "ffn": ("ffn",),
    "kvp_all_to_all": ("kvp_all_to_all",),
    "o_projection_all_reduce": ("o_projection_all_reduce",),
    "ffn_all_reduce": ("ffn_all_reduce",),
    "embedding_all_reduce": ("embedding_all_reduce",),
    "lm_head_all_gather": ("lm_head_all_gather",),
}
OTHER = "other"  # step time outside every named phase (LM head, norms, Python) vs embedding_lm_head
COLLECTIVE_PHASES = frozenset(("kvp_all_to_all", "o_projection_all_reduce", "ffn_all_reduce", "embedding_all_reduce",
                               "lm_head_all_gather"))


@dataclass(frozen=True)
class Measured:
    point: GridPoint
    step_s: float  # median over repeats of the slowest rank's step (the headline figure)
    phase_s: dict[str, float]  # mean over repeats (see combine_ranks)
    samples: int
    spread: float  # (max - min) / median of the step samples
    mean_step_s: float = 0.0  # mean over repeats of the slowest rank's step: the phases add up to it
    wait_s: float = 0.0  # mean over repeats and ranks of the time ranks wait at collectives for the last
    calls_s: dict[str, list[float]] = field(default_factory=dict)  # blocking collective -> each call's time


def timed_calls(spans_per_rank: list[list[tuple[str, float, float]]]) -> list[tuple[str, float, float]]:
    """One step's blocking collectives, (phase, seconds, wait) per call, timed from the last rank's
    arrival (helix.validation.timing.last_arrival); ranks must agree on each call's phase. Pure; tested."""
    seconds, wait = last_arrival([[(entry, leave) for _, entry, leave in spans] for spans in spans_per_rank])
    names = []
    for call in zip(*spans_per_rank, strict=True):
        phases = {c[0] for c in call}
        if len(phases) != 1:
            raise ValueError(f"ranks disagree on the collective's phase: {sorted(phases)}")
        names.append(call[0][0])
    return list(zip(names, seconds.tolist(), wait.tolist(), strict=True))


def combine_ranks(point: GridPoint, per_rank: list[dict]) -> Measured:
    """Per repeat: the slowest rank's step and compute phases; collectives from the last arrival.

    Over repeats, the step's headline is the median; phases are means, so that with the mean step
    they add up (gloo collectives have a heavy tail: ~10 % of calls take a 4 ms scheduler tick, and a
    sum of per-phase medians would hide it). A blocking collective is timed from the moment the last
    rank reaches it (``timed_calls``), as ``helix calibrate`` times it: the wait of the ranks that
    arrive first is imbalance in the compute before it, not the collective's cost. Asynchronous
    exchanges (HOP-B's all-to-all: issue and ``wait``) leave no span and are the mean over ranks. Pure;
    tested.
    """
    steps = np.max(np.array([r["step_s"] for r in per_rank]), axis=0)
    names = sorted({k for r in per_rank for ph in r["phase_s"] for k in ph})
    timed: list[tuple[dict[str, float], float]] = []  # per repeat: {phase: s} of blocking collectives, the wait
    calls: dict[str, list[float]] = {}
    for i in range(len(per_rank[0]["step_s"])):
        per_phase, wait = {}, 0.0
        for name, seconds, w in (timed_calls([r["spans"][i] for r in per_rank]) if "spans" in per_rank[0] else []):
            per_phase[name] = per_phase.get(name, 0.0) + seconds
            calls.setdefault(name, []).append(seconds)
            wait += w
        timed.append((per_phase, wait))
    phases = {}
    for name in names:
        per = np.array([[ph.get(name, 0.0) for ph in r["phase_s"]] for r in per_rank])
        if name in COLLECTIVE_PHASES:
            across = np.array([t[0][name] if name in t[0] else per[:, i].mean() for i, t in enumerate(timed)])
        else:
            across = per.max(axis=0)
        phases[name] = float(np.mean(across))
    med = float(np.median(steps))
    return Measured(point, med, phases, int(steps.size), float((steps.max() - steps.min()) / med),
                    float(np.mean(steps)), float(np.mean([t[1] for t in timed])), calls)


def predict(model, hw, p: GridPoint):
    """The simulator's StepResult for a grid point (fp32 everywhere, as the runtime computes); HOP-B
    with the runtime's own schedule, one chunk per request (``hopb_chunks = B``)."""
    return simulate(model, hw, Layout.helix(kvp=p.kvp, tpa=p.tpa), p.batch, p.context, FP32,
                    overlap="pipelined" if p.hopb else "serial", hopb_chunks=p.batch if p.hopb else None,
                    allow_uneven=True)


@dataclass(frozen=True)
class Row:
    point: GridPoint
    measured_s: float
    predicted_s: float
    spread: float
    terms: dict[str, tuple[float, float]] = field(default_factory=dict)  # term -> (predicted, measured) s
    measured_mean_s: float = 0.0
    predicted_ring_ar_s: float = 0.0  # diagnostic: all-reduce restricted to the ring algorithm
    wait_s: float = 0.0  # per step, the time ranks wait at blocking collectives for the last to arrive
    calls_s: dict[str, list[float]] = field(default_factory=dict)  # blocking collective -> each call's time
    samples: int = 0  # timed steps

    @property
    def ring_ar_error(self) -> float:
        return float(fit.relative_errors(self.predicted_ring_ar_s, self.measured_s))

    @property
    def error(self) -> float:
        return float(fit.relative_errors(self.predicted_s, self.measured_s))


def compare(measured: Measured, breakdown: dict[str, float], ttl_s: float) -> Row:
    """Match the simulator's terms to the measured phases; the rest of the step is ``other``."""
    terms = {}
    named = 0.0
    for term, phases in TERM_PHASES.items():
        m = sum(measured.phase_s.get(ph, 0.0) for ph in phases)
        named += m
        pr = float(breakdown.get(term, 0.0))
        if pr > 0 or m > 0:
            terms[term] = (pr, m)
    step = measured.mean_step_s or measured.step_s
    terms[OTHER] = (float(breakdown.get("embedding_lm_head", 0.0)) + float(breakdown.get("step_overhead", 0.0)),
                    max(step - named, 0.0))
    return Row(measured.point, measured.step_s, float(ttl_s), measured.spread, terms, step,
               wait_s=measured.wait_s, calls_s=measured.calls_s, samples=measured.samples)


def ring_only_all_reduce_ttl_s(model, hw, p: GridPoint, result) -> float:
    """Diagnostic: the predicted step if all-reduce could only use the ring algorithm.

    helix.cost.collectives takes the cheapest of ring, one-shot and two-shot; gloo implements
    neither of the last two (they need peer memory). Only the all-reduce terms of the breakdown are
    swapped, so the all-to-all and the all-gather are untouched.
    """
    ring_hw = replace(hw, all_reduce_algorithms=("ring",))
    delta = 0.0
    for m in step_messages(model, FP32, "helix", p.tpa, p.kvp, 1, p.ranks, 1, 1, p.batch):
        if m.kind == "all_reduce" and float(m.group_size) > 1:
            delta += float(m.calls_per_step) * float(
                collectives.all_reduce_s(m.n_bytes, m.group_size, ring_hw)
                - collectives.all_reduce_s(m.n_bytes, m.group_size, hw))
    return float(result.ttl_s) + delta


def predicted_row(model, hw, measured: Measured) -> Row:
    """One point's row: the prediction matched to the measurement, with the ring-only diagnostic."""
    res = predict(model, hw, measured.point)
    row = compare(measured, {k: float(v) for k, v in res.breakdown.items()}, float(res.ttl_s))
    return replace(row, predicted_ring_ar_s=ring_only_all_reduce_ttl_s(model, hw, measured.point, res))


@dataclass(frozen=True)
class ValidationResult:
    rows: list[Row]
    hardware: str
    model: str
    wall_s: float
    notes: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)  # aten ops per decode step, by runtime phase
    launches: dict[str, int] = field(default_factory=dict)  # the launches helix.step charges per step, by phase
    drift_rates: list[float] = field(default_factory=list)  # reference attention bytes/s around each layout
    profiled_rate: float = 0.0  # the same as the (single-rank) profile predicts it

    def summary(self) -> dict[str, float]:
        return fit.summarize_errors([r.error for r in self.rows])

    def summary_json(self) -> dict:
        s = self.summary()
        ring = fit.summarize_errors([r.ring_ar_error for r in self.rows])
        return {"points": s["points"], "median_abs_error": round(s["median_abs"], 4),
                "max_abs_error": round(s["max_abs"], 4), "bias": round(s["median"], 4),
                "ring_only_all_reduce": {"median_abs_error": round(ring["median_abs"], 4),
                                         "max_abs_error": round(ring["max_abs"], 4)},
                "mean_step": {k: round(v, 4) for k, v in self.mean_step_summary().items() if k != "points"},
                "reference_attention_gb_per_s": [round(r / 1e9, 2) for r in self.drift_rates],
                "profile_attention_gb_per_s": round(self.profiled_rate / 1e9, 2),
                "hardware": self.hardware, "wall_s": round(self.wall_s, 1)}

    def mean_step_summary(self) -> dict[str, float]:
        """Diagnostic: the errors against the mean step instead of the median (the simulator's TTL is an
        expected step time; gloo's bimodal latency puts the two apart)."""
        return fit.summarize_errors([float(fit.relative_errors(r.predicted_s, r.measured_mean_s or r.measured_s))
                                     for r in self.rows])


def simulated_launches(model) -> dict[str, int]:
    """The launches helix.step charges per step of one rank alone, by runtime phase (``other``: once per
    step, embedding + LM head), from the op inventory: set beside the aten ops the runtime issues."""
    groups = launches.launches_by_term(model, kvp=1)
    per_term: dict[str, int] = {}
    for group in ("attention", "dense_ffn"):
        for term, n in groups[group].items():
            per_term[term] = per_term.get(term, 0) + n
    out = {phases[0]: per_term[term] * model.num_layers for term, phases in TERM_PHASES.items() if term in per_term}
    out[OTHER] = sum(groups["step"].values())
    return out
