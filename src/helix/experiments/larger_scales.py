"""Larger scales: Helix against the baselines from 8 to 576 GPUs, past one NVLink domain (no paper figure:
the paper stops at 64 GPUs in one GB200 NVL72 rack).

GB200 NVL72 racks (72-GPU domains) and HGX H200 / B200 clusters (8-GPU domains), DeepSeek-R1 and
Llama-405B at 1M, 4M and 10M tokens, on whole racks / nodes (the search's ``gpu_counts``) and a batch
grid of powers of two. A group that spans domains runs its collectives hierarchically over NVLink and
the scale-out network (helix.cost.collectives, placed by helix.placement); the search tries both rank
orders of a layout beyond one domain. Per GPU count: the lowest TTL and the highest tokens/s/GPU of
Helix and of the best baseline, the best Helix layout, which of its groups stay inside one domain, and
what crossing domains costs it: its TTL against the same layout on one domain holding every GPU.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from helix import search
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path, strategies_for
from helix.placement import layout_placement
from helix.report import Section, markdown_table, new_figure, save_figure, write_csv
from helix.specs import load_hardware
from helix.specs.precision import resolve
from helix.step import simulate

HARDWARE = ("gb200-nvl72", "h200", "b200")
COUNTS = {72: (8, 16, 32, 64, 72, 128, 144, 256, 288, 512, 576), 8: (8, 16, 32, 64, 128, 256, 512)}
QUICK_COUNTS = {72: (8, 64, 128), 8: (8, 16, 32)}
CONTEXTS = (10**6, 4 * 10**6, 10**7)
BATCHES = 2 ** np.arange(13)  # 1 .. 4,096: coarse, the best TTL sits at small batches
ALL_ONE_DOMAIN = 4096  # a counterfactual domain holding every GPU: what crossing domains costs
GROUPS = ("kvp", "tpa", "tpf", "ep", "dp")


def _hardware(ctx: Context, name: str):
    return ctx.hw if name == ctx.hw.name else load_hardware(name)


def _precision(ctx: Context, model, hw):
    """The report's precision on the GB200 preset; the CLI's default elsewhere (FP8 on Hopper)."""
    return ctx.precision if hw is ctx.hw else resolve(None, {}, model.checkpoint_weight_formats, hw)


def _points(ctx: Context, model, hw, precision, counts, context: int) -> search.Points:
    parts = []
    for s in strategies_for(model.name):
        lay = search.enumerate_layouts(model, s, max(counts), gpu_counts=set(counts),
                                       domain_gpus=hw.scale_up_domain_gpus)
        n = len(lay["tpa"])
        if n == 0:
            continue
        rep = {f: np.repeat(v, len(BATCHES)) for f, v in lay.items()}
        pts, _ = search.evaluate_points(model, hw, precision, s, rep, np.tile(BATCHES, n), context,
                                        feasible_only=True)
        parts.append(pts.take(pts.feasible))
    return search.Points.concat(parts) if parts else search.Points.empty()


def _inside(layout, domain: int) -> str:
    """The layout's groups (of more than one rank) that stay inside one domain, and those that do not."""
    placed = layout_placement(layout, domain)
    sizes = {g: getattr(layout, g) for g in GROUPS}
    inside = [g.upper() for g in GROUPS if sizes[g] > 1 and placed[g][0] == 1]
    across = [g.upper() for g in GROUPS if sizes[g] > 1 and placed[g][0] > 1]
    return f"inside: {', '.join(inside) or '–'}; across: {', '.join(across) or '–'}"


def _rows_for(ctx: Context, hw_name: str, model_name: str, counts, contexts) -> list[list]:
    hw = _hardware(ctx, hw_name)
    model = ctx.model(model_name)
    precision = _precision(ctx, model, hw)
    one_domain = replace(hw, scale_up_domain_gpus=ALL_ONE_DOMAIN)
    domain = hw.scale_up_domain_gpus
    rows = []
    for context in contexts:
        pts = _points(ctx, model, hw, precision, counts, context)
        for g in counts:
            at = pts.take(pts.num_gpus == g)
            helix, base = at.of("helix"), at.take(at.strategy != "helix")
            row = [hw_name, model_name, context, g, "yes" if g > domain else "no"]
            for side in (helix, base):
                row += [float(np.min(side.ttl_s)) * 1e3 if len(side) else None,
                        float(np.max(side.tokens_per_s_per_gpu)) if len(side) else None]
            if len(helix):
                i = int(np.argmin(helix.ttl_s))
                lay = helix.layout(i)
                flat = simulate(model, one_domain, lay, int(helix.batch[i]), context, precision)
                row += [f"{lay.describe()} B={int(helix.batch[i])}",
                        _inside(lay, domain) if g > domain else "one domain",
                        round(100.0 * (float(helix.ttl_s[i]) / float(flat.ttl_s) - 1.0), 2)]
            else:
                row += [None, None, None]
            rows.append(row)
    return rows


HEADERS = ["hardware", "model", "context", "GPUs", "beyond one domain", "Helix TTL ms", "Helix tok/s/GPU",
           "baseline TTL ms", "baseline tok/s/GPU", "best Helix layout (lowest TTL)", "its groups",
           "crossing cost %"]


def run(ctx: Context) -> Section:
    contexts = CONTEXTS[:1] if ctx.quick else CONTEXTS
    rows = []
    for hw_name in HARDWARE:
        for model_name in (DSR1, LLAMA_PAPER_F):
            domain = _hardware(ctx, hw_name).scale_up_domain_gpus
            counts = (QUICK_COUNTS if ctx.quick else COUNTS)[domain]
            rows += _rows_for(ctx, hw_name, model_name, counts, contexts)
    write_csv(ctx.out / "larger_scales.csv", HEADERS, rows)
    figures = [_figure(ctx, rows, model_name) for model_name in (DSR1, LLAMA_PAPER_F)]
    return Section(
        key="larger_scales", title="Larger scales: beyond one NVLink domain, 8 to 576 GPUs",
        measured=("For each GPU count on whole GB200 NVL72 racks (72-GPU NVLink domains, 8 racks = 576 GPUs) and "
                  "whole HGX H200 / B200 nodes (8-GPU domains, up to 512 GPUs), the lowest TTL and the highest "
                  "tokens/s/GPU of Helix and of the best baseline (batches 1 to 4,096 in powers of two, "
                  "InfiniBand NDR 400 Gb/s per GPU between domains). 'its groups': which of the best Helix "
                  "layout's groups stay inside one domain; 'crossing cost': its TTL over the same layout's on one "
                  "domain holding every GPU."),
        figures=figures, body=[markdown_table(HEADERS, rows, digits=4)],
        differs=("No paper figure: the paper keeps every layout inside one 72-GPU domain (<= 64 GPUs). Beyond it, "
                 "a collective whose group spans domains runs an NVLink phase and a network phase at 50 GB/s per "
                 "GPU; the search keeps the group of the largest exchange inside a domain where the rank order "
                 "allows (helix.placement) and trades GPUs for the network's latency."),
    )


def _figure(ctx: Context, rows: list[list], model_name: str) -> str:
    fig, axes = new_figure(len(HARDWARE), width=4.6)
    colors = {10**6: "#1f77b4", 4 * 10**6: "#ff7f0e", 10**7: "#2ca02c"}
    for ax, hw_name in zip(axes, HARDWARE, strict=True):
        mine = [r for r in rows if r[0] == hw_name and r[1] == model_name]
        for context, color in colors.items():
            sel = [r for r in mine if r[2] == context]
            if not sel:
                continue
            label = f"{context / 1e6:g}M"
            ax.plot([r[3] for r in sel], [r[5] if r[5] is not None else np.nan for r in sel], "-o", color=color,
                    label=f"Helix {label}")
            ax.plot([r[3] for r in sel], [r[7] if r[7] is not None else np.nan for r in sel], "--x", color=color,
                    label=f"baseline {label}")
        domain = _hardware(ctx, hw_name).scale_up_domain_gpus
        ax.axvline(domain, color="grey", ls=":", label=f"one domain ({domain} GPUs)")
        ax.set(xscale="log", xlabel="GPUs", ylabel="lowest TTL (ms)", title=f"{model_name} on {hw_name}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    return save_figure(fig, fig_path(ctx, f"larger_scales_{model_name}.png"))
