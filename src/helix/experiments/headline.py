"""Helix vs the best baseline for one model at 1M context: the figure, tables and curves of paper Fig. 5 / Fig. 6.

Shared by ``dsr1`` and ``llama``: the sweep, per-strategy frontiers normalised to the baseline as the
paper does (Fig. 5, Fig. 6), the throughput and batch ratios over TTL budgets (the whole curve), and
the layouts at the ends of each frontier.
"""

from __future__ import annotations

import numpy as np

from helix import search
from helix.experiments.claim_fields import baseline_label
from helix.experiments.common import Context, ModelClaims, baseline_norm, fig_path, model_claims, strategies_for
from helix.report import (
    frontier_legend,
    markdown_table,
    new_figure,
    plot_frontiers,
    save_figure,
    step_envelope,
    write_frontiers_csv,
)

BUDGET_MULTIPLES = (1.0, 1.1, 1.25, 1.5, 2.0, 3.0)


def frontier_table(fronts: dict[str, search.Points], strategies) -> str:
    rows = []
    for s in strategies:
        f = fronts.get(s)
        if f is None or len(f) == 0:
            rows.append([s, 0, None, None, None, None])
            continue
        i, j = int(np.argmax(f.tokens_per_s_per_user)), int(np.argmax(f.tokens_per_s_per_gpu))
        rows.append([s, len(f), f.describe(i), f.ttl_s[i] * 1e3, f.describe(j), f.tokens_per_s_per_gpu[j]])
    return markdown_table(["strategy", "frontier points", "lowest-TTL point", "TTL ms", "highest-throughput point",
                           "tokens/s/GPU"], rows, digits=4)


def budget_curve_figure(ctx: Context, mc: ModelClaims, name: str, png: str) -> str:
    fig, ax = new_figure(1)
    for br, label in ((mc.budget.throughput, "tokens/s/GPU ratio"), (mc.budget.batch, "users (batch) ratio")):
        where = f"max {br.max_ratio:.3g}× at {br.at_budget_s * 1e3:.3g} ms"
        ax.plot(br.budgets_s * 1e3, br.ratio, label=f"{label} ({where})")
    ax.set(xscale="log", yscale="log", xlabel="TTL budget (ms)",
           ylabel=f"Helix ÷ {baseline_label(mc.wording.budget_baseline)} (ratio)",
           title=f"{name}: Helix advantage under a TTL budget")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, fig_path(ctx, png))


def compare(ctx: Context, name: str, key: str):
    """Sweep, frontiers, figures and tables for one model; returns (ModelClaims, sweep, figures, body)."""
    strategies = strategies_for(name)
    sw = ctx.sweep(name, strategies)
    mc = model_claims(ctx, name)
    fronts = search.frontiers(sw.points, strategies)
    write_frontiers_csv(ctx.out / f"{key}_frontiers.csv", fronts)
    nx, ny = baseline_norm(fronts)

    fig, ax = new_figure(1, width=8.6, height=5.0)
    plot_frontiers(ax, fronts, nx, ny, strategies=[s for s in strategies if len(fronts.get(s, []))])
    # the best baseline as the upper envelope of the baseline curves, like the global frontier (never below them)
    bx, by, _ = step_envelope({s: (fronts[s].tokens_per_s_per_user / nx, fronts[s].tokens_per_s_per_gpu / ny)
                               for s in strategies if s in search.BASELINE_STRATEGIES and len(fronts.get(s, []))})
    ax.step(bx, by, where="post", color="#444444", lw=2.2, ls="--", label="best baseline")
    frontier_legend(ax)
    ax.set_title(f"{name}, 1M context, {ctx.hw.name}, ≤ {ctx.max_gpus} GPUs")
    figs = [save_figure(fig, fig_path(ctx, f"{key}_frontier.png")), budget_curve_figure(ctx, mc, name,
                                                                                          f"{key}_budget_ratio.png")]
    c = sw.counts()
    counts = markdown_table(
        ["strategy", "layouts", "points", "feasible", "weights > HBM", "KV > HBM", "batch < DP"],
        [[s, v["layouts"], v["evaluated"], v["feasible"], v["dropped"]["weights_exceed_hbm"],
          v["dropped"]["kv_exceeds_hbm"], v["dropped"]["batch_below_dp"]] for s, v in c["per_strategy"].items()]
        + [["all", sum(v["layouts"] for v in c["per_strategy"].values()), c["evaluated"], c["feasible"],
            c["dropped"]["weights_exceed_hbm"], c["dropped"]["kv_exceeds_hbm"], c["dropped"]["batch_below_dp"]]])
    feas = sw.feasible
    h, base = feas.of("helix"), feas.of(*mc.wording.budget_baseline)  # the baseline the claims are worded against
    t0 = float(base.ttl_s.min())
    budgets = t0 * np.array(BUDGET_MULTIPLES)
    fixed = [[f"{k:g} × = {t * 1e3:.3g} ms", hu, bu, hu / bu, ht, bt, ht / bt] for k, t, hu, bu, ht, bt in zip(
        BUDGET_MULTIPLES, budgets, search.best_within_budget(h.ttl_s, h.users, budgets),
        search.best_within_budget(base.ttl_s, base.users, budgets),
        search.best_within_budget(h.ttl_s, h.tokens_per_s_per_gpu, budgets),
        search.best_within_budget(base.ttl_s, base.tokens_per_s_per_gpu, budgets), strict=True)]
    owners = fronts["baseline"].strategy.tolist()
    share = {s: owners.count(s) for s in dict.fromkeys(owners)}
    body = [
        f"Sweep: {c['evaluated']:,} points ({len(sw.batch_grid)} batch sizes 1…{int(sw.batch_grid[-1])}, the memory "
        f"limit at this context) in {sw.wall_s:.2f} s; axes normalised to the best baseline (max {nx:.4g} "
        f"tokens/s/user, max {ny:.4g} tokens/s/GPU).",
        counts,
        "Frontier ends per strategy:",
        frontier_table(fronts, [*strategies, "baseline"]),
        "Baseline frontier owners (points): " + ", ".join(f"{k} {v}" for k, v in share.items()) + ".",
        (f"Throughput ratio peaks at a TTL budget of {mc.budget.throughput.at_budget_s * 1e3:.3g} ms "
         f"(Helix {mc.budget.throughput.helix[np.argmax(mc.budget.throughput.ratio)]:.4g} vs baseline "
         f"{mc.budget.throughput.baseline[np.argmax(mc.budget.throughput.ratio)]:.4g} tokens/s/GPU); batch ratio "
         f"peaks at {mc.budget.batch.at_budget_s * 1e3:.3g} ms (Helix "
         f"{mc.budget.batch.helix[np.argmax(mc.budget.batch.ratio)]:.0f} vs baseline "
         f"{mc.budget.batch.baseline[np.argmax(mc.budget.batch.ratio)]:.0f} users)."),
        f"The budget claims (against {baseline_label(mc.wording.budget_baseline)}) at fixed multiples of that "
        "baseline's lowest TTL (less sensitive than the maximum, which sits where the baseline first becomes "
        "feasible):",
        markdown_table(["TTL budget (× baseline's lowest)", "Helix users", "baseline users", "users ratio",
                        "Helix tokens/s/GPU", "baseline tokens/s/GPU", "tokens/s/GPU ratio"], fixed, digits=4),
    ]
    return mc, sw, figs, body
