"""Disturbed rows in the measured tables, dropped before a fit.

Both rules are physical bounds, applied to every table of their kind and never to one shape by hand:
a measurement that breaks them is a disturbed run (or a kernel the engine would not pick), and a fit
that followed it would spread the error to the shapes around it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

GLITCH_FACTOR = 2.0  # the slack on each bound: a kernel doing no more work is at most this much slower


def without_collective_glitches(rows):
    """Drop rows slower than GLITCH_FACTOR x the fastest row of the same group moving at least as many
    bytes: no kernel moves more data in less than half the time (TRT-LLM's H100 combine table: 138 us
    for 8 tokens beside 100 us for 256 of the same shape)."""
    group, n, t = rows.columns["group"], rows.columns["n_bytes"], rows.seconds
    keep = np.ones(t.size, dtype=bool)
    for g in np.unique(group):
        idx = np.where(group == g)[0]
        order = idx[np.argsort(-n[idx], kind="stable")]
        keep[order] = t[order] <= GLITCH_FACTOR * np.minimum.accumulate(t[order])
    return _keep(rows, keep)


MOE_KEYS = ("num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size")


def without_moe_glitches(rows):
    """Drop MoE rows slower than GLITCH_FACTOR x 2 x the same shape at twice the TP or twice the EP (the
    same tokens): doubling TP halves every rank's expert bytes and FLOPs, doubling EP halves its expert
    pairs, so twice the work in more than four times the time is not the kernel the engine would run
    (TRT-LLM's H200 BF16 table, hidden 4096, 512 experts of width 1024, top-10: 2.6 ms at TP 1 x EP 8
    beside 0.22 ms at TP 2 x EP 8)."""
    c, t = rows.columns, rows.seconds
    index = {tuple(int(c[k][i]) for k in MOE_KEYS): i for i in range(t.size)}
    keep = np.ones(t.size, dtype=bool)
    for key, i in index.items():
        tp, ep = key[5], key[6]
        halves = [index.get(key[:5] + (2 * tp, ep)), index.get(key[:5] + (tp, 2 * ep))]
        halves = [t[j] for j in halves if j is not None]
        keep[i] = not halves or t[i] <= GLITCH_FACTOR * 2 * min(halves)
    return _keep(rows, keep)


def _keep(rows, keep: np.ndarray):
    """``rows``: a ``tables.Rows``, less the rows ``keep`` is False for."""
    return replace(rows, columns={k: v[keep] for k, v in rows.columns.items()}, seconds=rows.seconds[keep])
