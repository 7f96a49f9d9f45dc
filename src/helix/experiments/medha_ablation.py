"""§4.3 Medha's handicaps, removed one at a time [paper §1, §3.2].

Medha ties TP between attention and FFN (the FFN runs at TP <= K, replicated per KVP group) and exposes
all communication. Four variants on the same grid:
  medha            tied TP, every collective exposed (the baseline of Fig. 6)
  medha+overlap    tied TP, KVP all-reduce pipelined with attention batch-wise (HOP-B-like)
  untied, exposed  Helix layouts (TPF x EP = N) with HOP-B OFF
  helix            Helix layouts with HOP-B ON
The gap share of a step is log(after/before) / log(helix/medha), in both orders (overlap first, untie first).
"""

from __future__ import annotations

import numpy as np

from helix import search
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path
from helix.report import Section, markdown_table, new_figure, save_figure

VARIANTS = (("medha", ("medha",), "auto"), ("medha+overlap", ("medha",), "pipelined"),
            ("untied, exposed", ("helix",), "serial"), ("helix", ("helix",), "auto"))
# Variants often coincide (overlap changes little where the all-reduce is short): wide pale lines under thin
# dashed ones keep both visible where they do.
VARIANT_STYLE = {"medha": dict(color="#9467bd", lw=4.0, alpha=0.45),
                 "medha+overlap": dict(color="#4b2a7b", lw=1.6, ls="--"),
                 "untied, exposed": dict(color="#ff7f0e", lw=4.0, alpha=0.45),
                 "helix": dict(color="#d62728", lw=1.6, ls="--")}


def _share(a: float, b: float, lo: float, hi: float) -> float:
    return float(np.log(b / a) / np.log(hi / lo)) if hi != lo else float("nan")


def run(ctx: Context) -> Section:
    fig, ax = new_figure(2, width=5.5)
    body = []
    for k, name in enumerate((LLAMA_PAPER_F, DSR1)):
        fronts, rows = {}, []
        for label, strategies, overlap in VARIANTS:
            fronts[label] = search.frontier(ctx.sweep(name, strategies, overlap=overlap).points)
        base = fronts["medha"]
        metric = {}
        for label, f in fronts.items():
            thr = search.budget_ratio(f.ttl_s, f.tokens_per_s_per_gpu, base.ttl_s, base.tokens_per_s_per_gpu)
            x = float(f.tokens_per_s_per_user.max()) if len(f) else float("nan")
            metric[label] = (x, thr.max_ratio)
            rows.append([label, len(f), x, float(f.tokens_per_s_per_gpu.max()) if len(f) else None, thr.max_ratio])
            if len(f):
                ax[k].step(f.tokens_per_s_per_user, f.tokens_per_s_per_gpu, where="post", label=label,
                           **VARIANT_STYLE[label])
        ax[k].set(yscale="log", xlabel="tokens/s/user", ylabel="tokens/s/GPU", title=f"{name}: Medha ablation")
        ax[k].grid(True, which="both", alpha=0.3)
        ax[k].legend()
        lo, hi = metric["medha"][0], metric["helix"][0]
        steps = [["overlap first: + overlap", _share(lo, metric["medha+overlap"][0], lo, hi)],
                 ["overlap first: + untie", _share(metric["medha+overlap"][0], hi, lo, hi)],
                 ["untie first: + untie", _share(lo, metric["untied, exposed"][0], lo, hi)],
                 ["untie first: + overlap", _share(metric["untied, exposed"][0], hi, lo, hi)]]
        body += [f"**{name}** (max interactivity: Medha {lo:.4g}, Helix {hi:.4g} tokens/s/user):",
                 markdown_table(["variant", "frontier points", "max tokens/s/user", "max tokens/s/GPU",
                                 "tokens/s/GPU ratio vs Medha (max over budgets)"], rows, digits=4),
                 "Share of the max-interactivity gap closed by each step:",
                 markdown_table(["step", "share of gap"], steps)]
    png = save_figure(fig, fig_path(ctx, "medha_ablation.png"))
    return Section(
        key="medha", title="Medha ablation: tied TP and exposed communication",
        measured=("Frontiers of four variants on the same grid (Medha; Medha with its KVP all-reduce overlapped; "
                  "Helix layouts with HOP-B off; Helix) and how much of the Medha→Helix gap each handicap explains."),
        figures=[png], body=body,
        differs=("The paper gives no numbers for this ablation; it states the two handicaps qualitatively. Untying "
                 "also brings Helix's other freedoms (TPF up to N, DP in attention), so 'untie' here means the "
                 "whole Helix layout space. For DeepSeek-R1 Medha is limited to TP = 1 (one latent KV head), so its "
                 "FFN runs unsharded within a stage and only PP makes it fit."),
    )
