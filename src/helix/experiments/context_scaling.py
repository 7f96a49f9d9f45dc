"""Context scaling: KV bytes read per GPU per step and TTL, 64K to 10M tokens, at a fixed batch, for
the best (lowest-TTL feasible) TP, Medha and Helix layout at each context [paper §2, App. A]."""

from __future__ import annotations

import numpy as np

from helix import search
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path
from helix.report import STRATEGY_STYLE, Section, markdown_table, new_figure, save_figure, write_csv
from helix.step import evaluate

CONTEXTS = np.array([64_000, 128_000, 256_000, 512_000, 10**6, 2 * 10**6, 4 * 10**6, 8 * 10**6, 10**7])
BATCH = 8
STRATEGIES = ("tp", "medha", "helix")


def best_per_context(ctx: Context, name: str, strategy: str, contexts=CONTEXTS, batch: int = BATCH):
    """Per context: (layout text, TTL s, KV bytes read per GPU per step, KV GB per GPU) of the lowest-TTL layout."""
    model = ctx.model(name)
    lay = search.enumerate_layouts(model, strategy, ctx.max_gpus)
    n, m = len(lay["tpa"]), len(contexts)
    if n == 0:
        return [(None, np.nan, np.nan, np.nan)] * m
    rep = [np.repeat(lay[f], m) for f in search.LAYOUT_FIELDS]
    r = evaluate(model, ctx.hw, ctx.precision, strategy, *rep, batch, np.tile(contexts, n))
    ttl = np.where(r.feasible, r.ttl_s, np.inf).reshape(n, m)
    kv_read = np.broadcast_to(r.hbm_read_bytes_per_gpu["attention"], r.ttl_s.shape).reshape(n, m)
    kv_mem = r.kv_bytes_per_gpu.reshape(n, m)
    out = []
    for j in range(m):
        i = int(np.argmin(ttl[:, j]))
        if not np.isfinite(ttl[i, j]):
            out.append((None, np.nan, np.nan, np.nan))
            continue
        text = ", ".join(f"{f}={lay[f][i]}" for f in search.LAYOUT_FIELDS if lay[f][i] != 1 or f == "tpa")
        out.append((text, ttl[i, j], kv_read[i, j], kv_mem[i, j] / 1e9))
    return out


def run(ctx: Context) -> Section:
    fig, ax = new_figure(2, width=5.5)
    rows, body = [], []
    for name in (LLAMA_PAPER_F, DSR1):
        for s in STRATEGIES:
            res = best_per_context(ctx, name, s)
            for n_tok, (text, ttl, kv_read, kv_mem) in zip(CONTEXTS, res, strict=True):
                rows.append([name, s, int(n_tok), text, ttl * 1e3, kv_read / 1e9, kv_mem])
            label, color = STRATEGY_STYLE[s]
            ls = "-" if name == LLAMA_PAPER_F else "--"
            ax[0].plot(CONTEXTS, [r[2] / 1e9 for r in res], marker="o", ls=ls, color=color)
            ax[1].plot(CONTEXTS, [r[1] * 1e3 for r in res], marker="o", ls=ls, color=color)
    ax[0].set(xscale="log", yscale="log", xlabel="context (tokens)", ylabel="KV bytes read per GPU per step (GB)",
              title=f"B = {BATCH}: KV traffic per GPU")
    # TTL on a linear axis: it spans well under a decade, where log ticks read "2×10¹"
    ax[1].set(xscale="log", xlabel="context (tokens)", ylabel="TTL (ms)",
              title=f"B = {BATCH}: TTL of the best layout")
    # one legend of colour = strategy and line style = model (proxy lines), not six "strategy model" entries
    # per axes, which at a readable font size covered the curves
    for s in STRATEGIES:
        ax[0].plot([], [], color=STRATEGY_STYLE[s][1], label=STRATEGY_STYLE[s][0])
    for name, ls in ((LLAMA_PAPER_F, "-"), (DSR1, "--")):
        ax[0].plot([], [], color="black", ls=ls, label=name)
    ax[0].legend(loc="lower right")  # the empty corner: KV grows with S
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
    png = save_figure(fig, fig_path(ctx, "context_scaling.png"))
    headers = ["model", "strategy", "context", "best layout", "TTL ms", "KV read GB/GPU/step", "KV GB/GPU"]
    write_csv(ctx.out / "context_scaling.csv", headers, rows)
    body.append(markdown_table(headers, rows, digits=4))
    return Section(
        key="context", title="Context scaling, 64K to 10M tokens",
        measured=(f"For each context, the lowest-TTL feasible layout of TP, Medha and Helix at B = {BATCH} "
                  f"(≤ {ctx.max_gpus} GPUs), its KV bytes read per GPU per step and its TTL ('–' where no layout "
                  "of that strategy fits in HBM)."),
        figures=[png], body=body,
        differs=("KV reads per GPU grow linearly with S for TP, whose per-GPU share stops shrinking at TP = K "
                 "(duplication), and for Medha and Helix are divided by KVP, so per-GPU traffic grows more slowly "
                 "than S while KVP can still grow; past KVP × TPA = 64 GPUs every strategy is linear again. TP runs "
                 "out of HBM first: its KV per GPU cannot fall below one KV head's share."),
    )
