"""§5 HOP-B ablation [paper §3.3, Fig. 7]: Helix frontiers with HOP-B ON vs OFF, and how much of TTL
is communication as the context grows.

HOP-B ON is ``"auto"`` (batch-wise pipeline, best chunk count). OFF has two readings: ``overlap="serial"``
(one batched KVP all-to-all per layer after all attention) and ``"per_request"`` (one all-to-all per
request, each exposed, as the paper's Fig. 3 draws it). Paper: ~1% tokens/s/user loss for DeepSeek-R1,
up to ~12% for Llama-405B at equal tokens/s/GPU.
"""

from __future__ import annotations

import numpy as np

from helix import search
from helix.cost.inventory import layer_counts
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path, model_claims
from helix.report import STRATEGY_STYLE, Claim, Section, markdown_table, new_figure, save_figure, write_csv
from helix.step import evaluate, simulate

CONTEXTS = (64_000, 128_000, 256_000, 512_000, 10**6, 2 * 10**6, 4 * 10**6, 10**7)
FIXED_BATCH = 8


def comm_share(ctx: Context, name: str, row: search.Points, contexts=CONTEXTS):
    """Communication share of TTL (serial total, and exposed with HOP-B) for one layout across contexts."""
    model = ctx.model(name)
    lay = [np.full(len(contexts), int(getattr(row, f)[0])) for f in search.LAYOUT_FIELDS]
    out = {}
    for overlap in ("serial", "auto"):
        r = evaluate(model, ctx.hw, ctx.precision, "helix", *lay, FIXED_BATCH, np.array(contexts), overlap=overlap)
        comm = sum(r.comm_exposed_s.values())
        a2a = r.comm_total_s["kvp_all_to_all"]
        out[overlap] = (np.broadcast_to(comm, r.ttl_s.shape) / r.ttl_s, np.broadcast_to(a2a, r.ttl_s.shape) / r.ttl_s,
                        r.ttl_s, r.feasible)
    return out


def per_request_collective_s(ctx: Context, name: str, row: search.Points) -> float:
    """Seconds of one request's KVP all-to-all at a layout (the per-request HOP-B OFF reading pays one per
    request per layer)."""
    lay, batch, model = row.layout(0), int(row.batch[0]), ctx.model(name)
    r = simulate(model, ctx.hw, lay, batch, 10**6, ctx.precision, overlap="per_request")
    traversed = float(layer_counts(model, lay.pp)["attention"])  # the all-to-all's calls per step
    return float(r.comm_total_s["kvp_all_to_all"]) / (traversed * -(-batch // lay.dp))


MODELS = ((DSR1, "dsr1"), (LLAMA_PAPER_F, "llama405b"))
CONTEXT_HEADERS = ["model", "layout", "context", "TTL ms (OFF)", "comm share (OFF)", "a2a share (OFF)", "TTL ms (ON)",
                   "exposed comm share (ON)", "feasible"]


def run(ctx: Context) -> Section:
    fig, ax = new_figure(2, width=5.5)
    found = [_one_model(ctx, name, cid, ax[k]) for k, (name, cid) in enumerate(MODELS)]
    png = save_figure(fig, fig_path(ctx, "hopb_on_off.png"))
    ctx_rows = [row for f in found for row in f["ctx_rows"]]
    write_csv(ctx.out / "hopb_comm_share_vs_context.csv", CONTEXT_HEADERS, ctx_rows)
    png2 = _comm_share_figure(ctx, ctx_rows)
    latency_rows = [f["latency_row"] for f in found]
    return Section(
        key="hopb", title="HOP-B ablation (paper Fig. 7)",
        measured=("The Helix frontier with HOP-B ON (KVP all-to-all pipelined over requests) and OFF (serial), "
                  "the tokens/s/user lost at equal tokens/s/GPU, and the communication share of TTL for the "
                  f"lowest-TTL 1M Helix layout at B = {FIXED_BATCH} as the context grows."),
        figures=[png, png2],
        body=[markdown_table(["model", "max loss, batched OFF", "median", "max loss, per-request OFF",
                              "at tokens/s/GPU", "median", "highest-throughput Helix point"],
                             [f["row"] for f in found]),
              "The per-request reading's collective: one request's share of the KVP all-to-all at the lowest-TTL "
              "1M Helix layout, as the fitted collective form times it (the sensitivity section varies the "
              "collective latency ×0.5 and ×2):",
              markdown_table(["model", "layout", "one request's all-to-all µs"], latency_rows),
              "All-to-all (and all communication) share of TTL along the 1M Helix frontier, HOP-B OFF accounting:",
              markdown_table(["model", "frontier points", "a2a min", "a2a median", "a2a max", "all comm median"],
                             [f["share_row"] for f in found]),
              "Communication share vs context (lowest-TTL 1M Helix layout):",
              markdown_table(CONTEXT_HEADERS, ctx_rows, digits=3)],
        claims=[c for f in found for c in f["claims"]],
        differs=_differs(ctx, latency_rows[0][2], [f["per_request_loss"] for f in found]),
    )


def _one_model(ctx: Context, name: str, cid: str, ax) -> dict:
    """One model's frontiers (drawn on ``ax``), loss CSV, table rows and claims."""
    mc = model_claims(ctx, name)
    on = search.frontier(ctx.sweep(name, ("tp", "tp_pp", "dp_ep", "medha", "helix") if name == DSR1 else
                                   ("tp", "tp_pp", "medha", "helix")).points.of("helix"))
    _plot_frontiers(ax, name, mc, on, search.frontier(ctx.sweep(name, ("helix",), overlap="serial").points),
                    search.frontier(ctx.sweep(name, ("helix",), overlap="per_request").points))
    loss, req = mc.hopb, mc.hopb_per_request
    write_csv(ctx.out / f"hopb_{cid}_loss.csv", ["tokens_per_s_per_gpu", "tps_user_on", "tps_user_off", "loss"],
              [list(r) for r in zip(loss.throughput, loss.on, loss.off, loss.loss, strict=True)])
    best = on.take([int(np.argmax(on.tokens_per_s_per_user))])
    row = [name, mc.hopb_off_interactivity_loss, float(np.median(loss.loss)),
           mc.hopb_off_interactivity_loss_per_request, req.at_throughput, float(np.median(req.loss)),
           on.describe(0) if len(on) else None]
    one_s = per_request_collective_s(ctx, name, best)
    claims = [Claim(f"{cid}.hopb_off_interactivity_loss", mc.hopb_off_interactivity_loss,
                    f"OFF = one batched all-to-all per layer; max over the common tokens/s/GPU range; "
                    f"median {np.median(loss.loss):.3g}"),
              Claim(f"{cid}.hopb_off_interactivity_loss_per_request", mc.hopb_off_interactivity_loss_per_request,
                    f"OFF = one all-to-all per request (the paper's Fig. 3), each {one_s * 1e6:.1f} µs at the "
                    f"lowest-TTL layout; median {np.median(req.loss):.3g}",
                    {"per_request_collective_s": float(f"{one_s:.4g}"), "layout": best.describe(0)})]
    return {"row": row, "ctx_rows": _context_rows(ctx, name, best), "share_row": _frontier_share_row(ctx, name, on),
            "latency_row": [name, best.describe(0).split(" B=")[0], one_s * 1e6], "claims": claims,
            "per_request_loss": mc.hopb_off_interactivity_loss_per_request}


def _plot_frontiers(ax, name: str, mc, on: search.Points, off: search.Points, per_req: search.Points) -> None:
    """HOP-B ON and both OFF frontiers, each axis divided by the ON frontier's maximum."""
    nx, ny = on.tokens_per_s_per_user.max(), on.tokens_per_s_per_gpu.max()
    ax.step(on.tokens_per_s_per_user / nx, on.tokens_per_s_per_gpu / ny, where="post",
            color=STRATEGY_STYLE["helix"][1], lw=3, alpha=0.6, label="HOP-B ON")
    ax.step(off.tokens_per_s_per_user / nx, off.tokens_per_s_per_gpu / ny, where="post", color="#ff7f0e",
            ls="--", label=f"OFF, one batched exchange ({mc.hopb_off_interactivity_loss:.1%} lost)")
    ax.step(per_req.tokens_per_s_per_user / nx, per_req.tokens_per_s_per_gpu / ny, where="post",
            color="#1f77b4", ls=":", label=f"OFF, one exchange per request, Fig. 3 "
                                           f"({mc.hopb_off_interactivity_loss_per_request:.1%} lost)")
    ax.set(yscale="log", xlabel="tokens/s/user (÷ Helix ON max)", ylabel="tokens/s/GPU (÷ Helix ON max)",
           title=f"{name}: HOP-B ON vs both OFF readings")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def _context_rows(ctx: Context, name: str, best: search.Points) -> list[list]:
    """CONTEXT_HEADERS rows: the lowest-TTL layout's TTL and communication shares at each of CONTEXTS."""
    shares = comm_share(ctx, name, best)
    return [[name, best.describe(0).split(" B=")[0], n_tok, shares["serial"][2][i] * 1e3, shares["serial"][0][i],
             shares["serial"][1][i], shares["auto"][2][i] * 1e3, shares["auto"][0][i], shares["serial"][3][i]]
            for i, n_tok in enumerate(CONTEXTS)]


def _frontier_share_row(ctx: Context, name: str, on: search.Points) -> list:
    """All-to-all share of TTL along the 1M Helix frontier (serial accounting): min, median, max."""
    res = search.resimulate(ctx.model(name), ctx.hw, ctx.precision, on, 10**6)["helix"][1]
    a2a = res.comm_total_s["kvp_all_to_all"] / res.ttl_s
    comm = sum(res.comm_total_s.values()) / res.ttl_s
    return [name, len(on), float(np.min(a2a)), float(np.median(a2a)), float(np.max(a2a)), float(np.median(comm))]


def _comm_share_figure(ctx: Context, ctx_rows: list[list]):
    """Communication share of TTL against context, HOP-B OFF and ON, per model."""
    fig, ax = new_figure(1)
    for name, _ in MODELS:
        r = [x for x in ctx_rows if x[0] == name]
        ax.plot([x[2] for x in r], [x[4] for x in r], "o-", label=f"{name}: comm / TTL, HOP-B OFF")
        ax.plot([x[2] for x in r], [x[7] for x in r], "s--", label=f"{name}: exposed comm / TTL, HOP-B ON")
    ax.set(xscale="log", xlabel="context (tokens)", ylabel="share of TTL",
           title=f"Communication share, lowest-TTL 1M Helix layout, B = {FIXED_BATCH}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, fig_path(ctx, "hopb_comm_share.png"))


def _differs(ctx: Context, dsr1_one_us: float, per_request_loss: list[float]) -> str:
    """Why our batched-OFF loss is zero and the per-request one large, where the paper has ~1 % and ~12 %."""
    return ("In our model the KVP all-to-all is latency-bound: per layer it moves B·Q/TPA·(Hsz·0.5 + 4) bytes "
            "per rank (a few KB to ~100 KB), a fraction of a microsecond at NVLink bandwidth against an "
            f"{ctx.hw.sync_latency_s * 1e6:.0f} µs synchronisation latency. HOP-B splits the batch into "
            "chunks whose all-to-alls each pay that latency, and the last chunk's is always exposed, so "
            "pipelining hides only the bandwidth part, and each extra attention chunk pays a kernel launch: "
            "with the nominal constants the search never prefers a chunked schedule, the ON and OFF frontiers "
            "coincide and the batched-OFF loss is zero for both models (paper: ~1 % and ~12 %). The paper's "
            "Fig. 3 draws HOP-B OFF as B per-request transfers (B·t_c exposed); that reading is the second "
            "claim (overlap \"per_request\"), and it gives the opposite gap: each request's all-to-all pays "
            f"the collective latency ({dsr1_one_us:.3g} µs at DeepSeek-R1's lowest-TTL layout), so OFF "
            f"loses {per_request_loss[0]:.0%} (DeepSeek-R1) and {per_request_loss[1]:.0%} (Llama-405B) of "
            "tokens/s/user, where the paper has ~1 % and ~12 %. The paper's figures sit between the two "
            "readings; which one its simulator used is not stated. "
            "The all-to-all itself is a large share of TTL at small batches "
            "(see the tables: about the paper's 12 % for Llama at B = 1), so the gap is in what HOP-B can hide, "
            "not in how big the all-to-all is. The sensitivity probe with zero collective latency (time "
            "proportional to bytes, the paper's Fig. 3 picture) shows what remains. At a fixed layout the "
            "all-to-all's share of TTL falls as the context grows (its payload is independent of S, attention "
            "grows with S/KVP); the paper's 'more important with longer contexts' holds only as longer "
            "contexts push the search to wider KVP.")
