"""Dynamic adaptation: re-shard the live KV cache to a better Helix layout as contexts grow, vs the best static one.

Trace (``session_trace``, seeded, deterministic): ``slots`` concurrent agentic sessions on a fixed GPU count.
A session starts with a prompt log-uniform in 8K..128K tokens; each turn decodes an answer of 1K..4K tokens
(uniform), then appends an input (tool output, user turn) log-uniform in 2K..128K, prefilled elsewhere
(disaggregated) into the live cache; a session ends once its context passes its cap, log-uniform in 256K..4M,
and a new one takes its slot. Why: multi-turn agents are where a request's context grows by orders of
magnitude while it decodes; log-uniform sizes weight every octave alike, as no single scale dominates; all
sessions start together, so the batch's contexts grow over the trace, then mix as sessions are replaced.
Time advances in segments of ``SEGMENT_STEPS`` decode steps (one token per session per step).

Each segment is timed at the batch's mean context (the attention reads and the round-robin KV per rank sum
over requests, so both follow the mean) for every Helix layout on exactly the GPU count (DP = PP = 1) by
helix.step.evaluate. Static: the one layout with the least total decode time that is feasible in every
segment. Dynamic (``dynamic_policy``): layouts with the static one's FFN split (TPF x EP: no expert or FFN
weight moves); at each segment boundary switch to the segment's lowest-TTL layout when the gain over the
next segment, (TTL now - TTL best) x SEGMENT_STEPS, beats the re-shard's stall (or the current layout no
longer fits): the live KV moved (helix.cost.reshard, exact for round-robin blocks) plus, where TPA changes,
each rank's whole new QKV slice (an upper bound on the weights re-sliced), one all-to-all while decoding
waits.
"""

from __future__ import annotations

import numpy as np

from helix import search
from helix.cost import memory, reshard
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path
from helix.report import Section, markdown_table, new_figure, save_figure, write_csv
from helix.step import evaluate

MODELS = (LLAMA_PAPER_F, DSR1)
SEGMENT_STEPS = 1000
TRACE_STEPS = 200_000
SEED = 7


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def session_trace(slots: int, steps: int = TRACE_STEPS, segment: int = SEGMENT_STEPS, seed: int = SEED):
    """Mean context (tokens) of the ``slots`` live sessions at the middle of each segment, and the sessions
    started; deterministic for a seed (see the module docstring for the distribution)."""
    rng = np.random.default_rng(seed)

    def new_session():
        return {"ctx": _log_uniform(rng, 8e3, 128e3), "left": int(rng.integers(1000, 4001)),
                "cap": _log_uniform(rng, 256e3, 4e6)}

    live = [new_session() for _ in range(slots)]
    started, means = slots, []
    for _ in range(steps // segment):
        means.append(np.mean([s["ctx"] for s in live]) + segment / 2)
        for i, s in enumerate(live):
            todo = segment
            while todo > 0:
                n = min(todo, s["left"])
                s["ctx"] += n
                s["left"] -= n
                todo -= n
                if s["left"] == 0:  # the turn's answer is done: the next input arrives, or the session ends
                    s["ctx"] += _log_uniform(rng, 2e3, 128e3)
                    s["left"] = int(rng.integers(1000, 4001))
                    if s["ctx"] > s["cap"]:
                        live[i] = s = new_session()
                        started += 1
    return np.array(means).astype(np.int64), started


def candidates(model, gpus: int) -> dict[str, np.ndarray]:
    lay = search.enumerate_layouts(model, "helix", gpus)
    keep = (lay["tpa"] * lay["kvp"] == gpus) & (lay["dp"] == 1) & (lay["pp"] == 1)
    return {f: v[keep] for f, v in lay.items()}


def layout_text(lay, i) -> str:
    return f"KVP {lay['kvp'][i]} × TPA {lay['tpa'][i]}, TPF {lay['tpf'][i]} × EP {lay['ep'][i]}"


def switch_cost(ctx: Context, model, lay, i, j, cache_bytes):
    """(bytes moved in all, stall s) of re-sharding from candidate i to j with ``cache_bytes`` of live KV."""
    a, ta, b, tb = (int(lay[k][x]) for x, k in ((i, "kvp"), (i, "tpa"), (j, "kvp"), (j, "tpa")))
    weights = 0.0
    if ta != tb:
        weights = float(memory.qkv_weight_elements(model, tb)) * model.num_layers * ctx.precision.bytes_of(
            "attention_weights")
    kv = float(reshard.reshard_bytes(cache_bytes, a, ta, b, tb, model.cache_heads))
    stall = float(reshard.reshard_s(cache_bytes, a, ta, b, tb, model.cache_heads, ctx.hw, weights))
    return kv + weights * a * ta, stall


def dynamic_policy(ctx: Context, model, lay, ttl, cache_bytes, allowed):
    """The switching policy (module docstring) over segments; ttl[candidate, segment] (inf: does not fit).
    Returns (decode s with stalls, bytes moved, [(step, from, to, bytes, stall s)], candidate per segment)."""
    cur, total, moved, switches, chosen = None, 0.0, 0.0, [], []
    for k in range(ttl.shape[1]):
        col = np.where(allowed, ttl[:, k], np.inf)
        best = int(np.argmin(col))
        if cur is None:
            cur = best
        elif best != cur:
            size, stall = switch_cost(ctx, model, lay, cur, best, cache_bytes[k])
            if not np.isfinite(col[cur]) or (col[cur] - col[best]) * SEGMENT_STEPS > stall:
                switches.append((k * SEGMENT_STEPS, cur, best, size, stall))
                total, moved, cur = total + stall, moved + size, best
        total += col[cur] * SEGMENT_STEPS
        chosen.append(cur)
    return total, moved, switches, np.array(chosen)


def compare(ctx: Context, name: str):
    """Static and dynamic on the trace for one model: a dict of the figures the report shows."""
    model, gpus = ctx.model(name), ctx.max_gpus
    slots = gpus // 2
    means, started = session_trace(slots)
    lay = candidates(model, gpus)
    fields = [lay[f][:, None] for f in search.LAYOUT_FIELDS]
    r = evaluate(model, ctx.hw, ctx.precision, "helix", *fields, slots, means[None, :])
    ttl = np.where(r.feasible, r.ttl_s, np.inf)
    static_total = ttl.sum(axis=1) * SEGMENT_STEPS
    s = int(np.argmin(static_total))
    per_token = float(memory.attention_kv_bytes_per_token_per_layer_per_gpu(model, ctx.precision, 1))
    cache_bytes = slots * means * model.num_layers * per_token  # one copy of the batch's live KV
    allowed = (lay["tpf"] == lay["tpf"][s]) & (lay["ep"] == lay["ep"][s])
    dyn_total, moved, switches, chosen = dynamic_policy(ctx, model, lay, ttl, cache_bytes, allowed)
    tokens = slots * SEGMENT_STEPS * ttl.shape[1]
    return {"model": name, "gpus": gpus, "slots": slots, "sessions": started, "means": means, "lay": lay,
            "ttl": ttl, "static": s, "static_s": float(static_total[s]), "dynamic_s": dyn_total, "moved": moved,
            "switches": switches, "chosen": chosen, "tokens": tokens, "points": ttl.size,
            "stall_s": sum(x[4] for x in switches)}


def run(ctx: Context) -> Section:
    results = [compare(ctx, name) for name in MODELS]
    rows, switch_rows, csv = _tables(results)
    headers = ["model", "policy", "layout", "decode time s", "tokens/s/GPU", "switches", "GB moved", "stall ms"]
    write_csv(ctx.out / "dynamic_reshard.csv", ["model", "policy", "layout", "decode_s", "tokens_per_s_per_gpu",
                                                "switches", "bytes_moved", "stall_s"], csv)
    png = _figure(ctx, results)
    gain = "; ".join(f"{r['model']}: dynamic ÷ static tokens/s/GPU = {r['static_s'] / r['dynamic_s']:.3f} with "
                     f"{len(r['switches'])} switches, {r['moved'] / 1e9:.3g} GB moved, {r['stall_s'] * 1e3:.3g} ms "
                     "stalled" for r in results)
    body = [gain + ".", markdown_table(headers, rows, digits=4)]
    if switch_rows:
        body.append(markdown_table(["model", "at step", "batch mean context", "from", "to", "GB moved", "stall ms"],
                                   switch_rows, digits=4))
    r0 = results[0]
    return Section(
        key="dynamic", title="Dynamic re-sharding as contexts grow",
        measured=(f"{r0['slots']} concurrent agentic sessions on {r0['gpus']} GB200 GPUs over {TRACE_STEPS:,} decode "
                  f"steps ({r0['sessions']} sessions started; seed {SEED}): prompts log-uniform 8K..128K, turns of "
                  "1K..4K decoded tokens, each followed by an input log-uniform 2K..128K, a session ending past a "
                  "cap log-uniform 256K..4M. Every Helix layout on that GPU count (DP = PP = 1) timed per segment "
                  f"of {SEGMENT_STEPS:,} steps at the batch's mean context; the best static layout against a "
                  "policy that re-shards the live KV to the segment's best layout (same FFN split) when the gain "
                  "over the next segment beats the stall. Bytes moved: helix.cost.reshard (round-robin blocks: "
                  "1 − min(a, b)/lcm(a, b) of the cache from KVP a to b at TPA 1; per rank blocks × heads "
                  "otherwise) plus each rank's new QKV slice where TPA changes; the stall is the busiest rank's "
                  "all-to-all."),
        figures=[png], body=body, points_evaluated={r["model"]: r["points"] for r in results},
        differs=("No paper figure: the paper names runtime reconfiguration as future work. The trace is synthetic "
                 "(the distribution above is an assumption, not a measured workload); a mixed batch is timed at "
                 "its mean context; prefill and the arrival of new inputs are not timed (disaggregated), and a "
                 "switch moves the whole live cache at once while decoding waits."),
    )


def _tables(results: list[dict]) -> tuple[list, list, list]:
    """(report rows, switch rows, CSV rows): per model the best static layout and the dynamic policy."""
    rows, switch_rows, csv = [], [], []
    for res in results:
        n, tok = res["gpus"], res["tokens"]
        lay = res["lay"]
        for what, total, layout in (("best static", res["static_s"], layout_text(lay, res["static"])),
                                    ("dynamic", res["dynamic_s"], "")):
            dyn = what == "dynamic"
            rows.append([res["model"], what, layout or f"{len(res['switches'])} switches", total,
                         tok / (total * n), len(res["switches"]) if dyn else 0, res["moved"] / 1e9 if dyn else 0.0,
                         res["stall_s"] * 1e3 if dyn else 0.0])
            csv.append([res["model"], what, layout, total, tok / (total * n), len(res["switches"]) if dyn else 0,
                        res["moved"] if dyn else 0.0, res["stall_s"] if dyn else 0.0])
        for step, i, j, size, stall in res["switches"]:
            switch_rows.append([res["model"], f"{step:,}", f"{res['means'][step // SEGMENT_STEPS]:,}",
                                layout_text(lay, i), layout_text(lay, j), size / 1e9, stall * 1e3])
    return rows, switch_rows, csv


def _figure(ctx: Context, results: list[dict]):
    """The trace's batch mean context, and TTL per step under the static and the dynamic layout."""
    fig, ax = new_figure(2, width=5.5)
    for res, color in zip(results, ("#d62728", "#1f77b4"), strict=True):
        steps = np.arange(len(res["means"])) * SEGMENT_STEPS
        if res is results[0]:  # one trace for every model
            ax[0].plot(steps, res["means"], color="black")
        dyn_ttl = res["ttl"][res["chosen"], np.arange(len(res["chosen"]))]
        ax[1].plot(steps, res["ttl"][res["static"]] * 1e3, "--", color=color, label=f"{res['model']}, static")
        ax[1].plot(steps, dyn_ttl * 1e3, "-", color=color, label=f"{res['model']}, dynamic")
        for step, *_ in res["switches"]:
            ax[1].axvline(step, color=color, lw=0.6, alpha=0.5)
    ax[0].set(yscale="log", xlabel="decode step", ylabel="batch mean context (tokens)",
              title=f"the trace: {results[0]['slots']} sessions on {results[0]['gpus']} GPUs")
    ax[1].set(xlabel="decode step", ylabel="TTL ms", title="TTL, static vs dynamic (lines: switches)")
    ax[1].legend(fontsize=7)
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
    return save_figure(fig, fig_path(ctx, "dynamic_reshard.png"))
