"""What summary.json keeps beside each claim: the claim at fixed multiples of the baseline's lowest TTL,
the baseline point that sets that tightest budget, and the readings the claim is not worded as.

A budget ratio maximised over budgets sits where the baseline first becomes feasible (a knife edge);
the same ratio at 1.1, 1.25, 1.5 and 2 x the baseline's lowest TTL shows how fast it falls away.
"""

from __future__ import annotations

import numpy as np

from helix import search
from helix.experiments.common import Context, ModelClaims, model_claims, strategies_for

REPORTED_MULTIPLES = (1.1, 1.25, 1.5, 2.0)
BUDGET_VALUE = {"throughput_ratio": "tokens_per_s_per_gpu", "max_batch_ratio": "users"}


def _sig(v: float, digits: int = 4) -> float | None:
    return None if not np.isfinite(v) else float(f"{v:.{digits}g}")


def baseline_label(strategies: tuple[str, ...]) -> str:
    return strategies[0] if len(strategies) == 1 else "best of " + ", ".join(strategies)


def point_fields(points: search.Points, i: int) -> dict:
    """One sweep point as summary.json names it: strategy, layout widths, batch, users, TTL."""
    lay = points.layout(i)
    return {"strategy": lay.strategy, **{f: int(getattr(points, f)[i]) for f in search.LAYOUT_FIELDS},
            "batch": int(points.batch[i]), "users": int(points.users[i]), "ttl_ms": _sig(points.ttl_s[i] * 1e3),
            "describe": points.describe(i)}


def ratio_at_multiples(helix: search.Points, baseline: search.Points, value: str, multiples=REPORTED_MULTIPLES):
    """{multiple: helix_best(T) / baseline_best(T)} at T = multiple x the baseline's lowest TTL."""
    budgets = float(baseline.ttl_s.min()) * np.asarray(multiples)
    h = search.best_within_budget(helix.ttl_s, getattr(helix, value), budgets)
    b = search.best_within_budget(baseline.ttl_s, getattr(baseline, value), budgets)
    return {f"{k:g}": _sig(x) for k, x in zip(multiples, h / b, strict=True)}


def _sides(ctx: Context, name: str, baseline_strategies) -> tuple[search.Points, search.Points]:
    pts = ctx.sweep(name, strategies_for(name)).points
    feas = pts.take(pts.feasible)
    return feas.of("helix"), feas.of(*baseline_strategies)


def budget_fields(ctx: Context, name: str, which: str, mc: ModelClaims | None = None) -> dict:
    """at_budget_multiple, baseline_point (the baseline's lowest-TTL point) and the reading against the
    other baseline set (the union where the claim is against TP, and the reverse)."""
    mc = mc or model_claims(ctx, name)
    worded = mc.wording.budget_baseline
    helix, base = _sides(ctx, name, worded)
    out = {"baseline": baseline_label(worded),
           "at_budget_multiple": ratio_at_multiples(helix, base, BUDGET_VALUE[which]),
           "baseline_point": point_fields(base, int(np.argmin(base.ttl_s)))}
    union = mc.claims.throughput if which == "throughput_ratio" else mc.claims.batch
    if worded != search.BASELINE_STRATEGIES:
        out["vs_baseline_union"] = _sig(union.max_ratio)
    else:
        tp = search.helix_vs_baseline(ctx.sweep(name, strategies_for(name)).points, baseline=("tp",))
        out["vs_tp"] = _sig((tp.throughput if which == "throughput_ratio" else tp.batch).max_ratio)
    return out


def interactivity_fields(mc: ModelClaims) -> dict:
    """Both readings of the interactivity claim, whichever the paper words it as."""
    eb = mc.claims.equal_batch
    return {"worded_as": "TTL ratio at equal batch" if mc.wording.interactivity == "equal_batch"
            else "max tokens/s/user ratio",
            "at_equal_batch": _sig(eb.max_ratio), "at_equal_batch_users": None if not np.isfinite(eb.at_users)
            else int(eb.at_users), "max_tokens_per_s_per_user_ratio": _sig(mc.claims.max_interactivity_ratio)}
