"""Helix attention: local attention over this rank's KV shard, one all-to-all, the exact LSE combine.

Per layer, on rank (kvp_rank, tpa_rank) of an N = KVP x TPA attention group [paper §2.1]:

1. ``local_attention``: the Q/TPA query heads of the whole batch against the local KV shard
   (S_loc tokens of K/TPA KV heads) give a partial output and its log-sum-exp per (token, head).
   The LSE is the *natural* log, in fp32. A row with no visible key (an empty shard, or a prefill
   token whose earlier positions all live elsewhere) gets LSE = -inf and output 0, never NaN.
2. ``kvp_all_to_all``: the head axis Q/TPA is cut into KVP chunks of Q/N heads; chunk j (partial
   output and LSE packed in one fp32 buffer [.., Hsz + 1]) goes to KVP rank j. One call per layer,
   or one per chunk of requests under HOP-B.
3. ``combine_partial_attention``: the received KVP partials of Q/N heads are rescaled by
   exp(LSE_i - LSE) and summed: the exact softmax attention over all S tokens. With KVP = 1 there
   is nothing to exchange or merge (the local output is exact), so steps 2-3 are skipped.

``helix_attention`` runs steps 1-3 with the local attention passed in as ``attend(b0, b1)``, so GQA
(``gqa_attend``) and MLA (``helix.runtime.mla.mla_attend``: latent attention, then W_UV) share one
exchange and one HOP-B loop.

After the combine, rank (kvp_rank, tpa_rank) holds query heads
``tpa_rank * Q/TPA + kvp_rank * Q/N + [0, Q/N)``; the O-projection's row shard follows that.

HOP-B [paper §2.1.3]: the batch is split into chunks; chunk i's all-to-all is issued asynchronously
and runs while chunk i+1's local attention computes.

References: paper §2.1.1-2.1.3; docs/runtime.md (merge math, pitfalls).
"""

from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------- local attention


# Split-KV (flash-decoding) block of the local attention, in cached tokens. Eager PyTorch writes the
# scores and their softmax to memory; past ~8K tokens per row those passes no longer stay in cache
# and a 64K-token shard runs at ~7 GB/s instead of ~10 on one CPU core (measured, docs/validation.md
# §3). Blocks are merged with the same exact LSE combine as the KVP exchange.
KV_BLOCK_TOKENS = 8192


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
                    k_positions: torch.Tensor, scale: float,
                    block_tokens: int | None = KV_BLOCK_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q against this shard's keys; returns (output, natural-log LSE).

    Causality uses *global* positions (``k_positions[s] <= q_positions[t]``), never local indices.
    A shard longer than ``block_tokens`` is attended block by block and the blocks merged exactly
    (``combine_partial_attention``); None attends the shard in one pass.
    """
    S_loc = k.shape[2]
    if block_tokens is None or S_loc <= block_tokens:
        return _attention_pass(q, k, v, q_positions, k_positions, scale)
    parts = [_attention_pass(q, k[:, :, s:s + block_tokens], v[:, :, s:s + block_tokens], q_positions,
                             k_positions[s:s + block_tokens], scale) for s in range(0, S_loc, block_tokens)]
    return combine_partial_attention(torch.stack([o for o, _ in parts]), torch.stack([lse for _, lse in parts]))


def _attention_pass(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
                    k_positions: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``local_attention`` over every key it is given."""
    B, T, Ql, Hsz = q.shape  # q: [B, T, Q/TPA, Hsz], replicated over KVP
    Kl = k.shape[1]  # k, v: [B, K/TPA, S_loc, Hsz], this rank's KV shard
    g = Ql // Kl  # query heads per KV head (GQA)
    qg = q.reshape(B, T, Kl, g, Hsz).permute(0, 2, 3, 1, 4)  # [B, K/TPA, g, T, Hsz]
    scores = torch.einsum("bkgtd,bksd->bkgts", qg, k) * scale  # [B, K/TPA, g, T, S_loc]
    visible = k_positions[None, :] <= q_positions[:, None]  # [T, S_loc]
    scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [B, K/TPA, g, T]; -inf where no key is visible
    safe_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    probs = torch.exp(scores - safe_lse.unsqueeze(-1))  # masked -> exp(-inf) = 0; empty row -> all 0
    out = torch.einsum("bkgts,bksd->bkgtd", probs, v)  # [B, K/TPA, g, T, Hsz]; empty row -> 0
    out = out.permute(0, 3, 1, 2, 4).reshape(B, T, Ql, Hsz)  # [B, T, Q/TPA, Hsz], partial over KVP
    lse = lse.permute(0, 3, 1, 2).reshape(B, T, Ql)  # [B, T, Q/TPA], fp32, natural log
    return out, lse


# ---------------------------------------------------------------- combine


def combine_partial_attention(outs: torch.Tensor, lses: torch.Tensor,
                              lse_base: float = math.e) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact merge of P partial attentions: (Σ_i w_i O_i, L) with w_i = exp(L_i - L), L = log Σ exp(L_i).

    outs: [P, ..., D]; lses: [P, ...] in log base ``lse_base`` (e by default; 2 for kernels that
    return log2-sum-exp2). A shard with LSE -inf or NaN has weight 0 and its output is ignored even
    if it is NaN (0 * NaN would be NaN, so the output is masked, not just weighted). A row where every
    shard is empty gives output 0 and LSE -inf. The returned LSE is natural-log.
    """
    lses = torch.where(torch.isnan(lses), torch.full_like(lses, float("-inf")), lses)
    if lse_base != math.e:
        lses = lses * math.log(lse_base)  # log_b x = ln x / ln b
    top = lses.amax(dim=0)  # [...]
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(lses - top)  # [P, ...]; empty shard -> 0
    total = weights.sum(dim=0)  # [...]
    weights = weights / torch.where(total > 0, total, torch.ones_like(total))
    live = (weights > 0).unsqueeze(-1)
    out = torch.where(live, outs * weights.unsqueeze(-1), torch.zeros_like(outs)).sum(dim=0)  # [..., D]
    lse = top + torch.log(total)  # -inf where every shard is empty
    return out, lse


# ---------------------------------------------------------------- the KVP exchange


def _pack(out: torch.Tensor, lse: torch.Tensor, kvp: int) -> torch.Tensor:
    """[B, T, Q/TPA, D] + [B, T, Q/TPA] -> send buffer [KVP, B, T, Q/N, D + 1] (chunk j to KVP rank j)."""
    B, T, Ql, D = out.shape
    packed = torch.cat([out, lse.unsqueeze(-1)], dim=-1)  # [B, T, Q/TPA, D + 1], fp32
    return packed.reshape(B, T, kvp, Ql // kvp, D + 1).permute(2, 0, 1, 3, 4).contiguous()


def _combine_received(recv: torch.Tensor) -> torch.Tensor:
    """[KVP (source), B, T, Q/N, D + 1] -> exact attention [B, T, Q/N, D]."""
    out, _ = combine_partial_attention(recv[..., :-1], recv[..., -1])
    return out


def helix_attention(comm, attend, batch_size: int, hopb_chunks: int = 1) -> torch.Tensor:
    """local attention -> kvp_all_to_all -> combine_partial_attention, for any attention kind.

    ``attend(b0, b1) -> (out [b1-b0, T, Q/TPA, D], natural-log lse [b1-b0, T, Q/TPA])`` is this rank's
    local attention of requests [b0, b1) over its KV shard (GQA: ``local_attention``; MLA: latent
    attention then W_UV, so D = v). Returns the exact attention of this rank's Q/N heads [B, T, Q/N, D].

    ``hopb_chunks`` > 1 splits the batch into that many chunks of requests and overlaps chunk i's
    all-to-all with chunk i+1's attention (HOP-B); the result is the same as with one chunk.
    """
    KVP = comm.group_sizes["kvp"]
    results: list[torch.Tensor] = []
    pending = None
    for rows in torch.arange(batch_size).tensor_split(max(1, min(hopb_chunks, batch_size))):
        b0, b1 = int(rows[0]), int(rows[-1]) + 1
        with comm.phase("local_attention"):
            out, lse = attend(b0, b1)  # [Bc, T, Q/TPA, D], [Bc, T, Q/TPA], partial over KVP
        if KVP == 1:  # the local shard is the whole context: out is already exact (0 where nothing is visible)
            results.append(out)
            continue
        send = _pack(out, lse, KVP)  # [KVP, Bc, T, Q/N, D + 1], fp32
        recv, work = comm.all_to_all(send, "kvp", "kvp_all_to_all", async_op=hopb_chunks > 1)
        if pending is not None:  # chunk i-1's exchange ran while chunk i's attention computed
            results.append(_finish(comm, *pending))
        pending = (recv, work)
    if pending is not None:
        results.append(_finish(comm, *pending))
    # [B, T, Q/N, D], exact, sharded over heads by N
    return results[0] if len(results) == 1 else torch.cat(results, dim=0)


def gqa_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
               k_positions: torch.Tensor, scale: float):
    """The ``attend`` callable of ``helix_attention`` for GQA: ``local_attention`` on requests [b0, b1)."""
    return lambda b0, b1: local_attention(q[b0:b1], k[b0:b1], v[b0:b1], q_positions, k_positions, scale)


def _finish(comm, recv: torch.Tensor, work) -> torch.Tensor:
    if work is not None:
        with comm.phase("kvp_all_to_all"):
            work.wait()
    with comm.phase("combine_partial_attention"):
        return _combine_received(recv)
