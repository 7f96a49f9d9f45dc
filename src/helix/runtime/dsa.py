"""DSA (DeepSeek-V3.2's sparse attention) under Helix KVP: the lightning indexer and an exact global top-k.

The indexer [DeepSeek-V3.2 report §2.1] gives every (query token t, cached token s) an index score

    I[t, s] = sum_h  w[t, h] * ReLU(scale * q_I[t, h] . k_I[s])        (w = weights_proj(x) / sqrt(H_I))

with its own query (``wq_b`` on the MLA query's compressed, normed q_a) and one key per token
(``wk`` then a LayerNorm), both rotated on their first d_r dims with half-split RoPE (not the MLA's
interleaved layout), scale = D_I^-0.5. The MLA attention of query t then sees only the top
``index_topk`` (k) visible tokens by I (all of them when fewer than k are visible). The index key is
cached per token beside the latent [c | k_r].

Under Helix the cache is sharded over KVP, so the top-k must be global (``select_topk``):

1. each rank scores its own S_loc tokens and keeps its k + 1 best scores per (request, query);
2. ``dsa_topk_all_gather`` over KVP: k + 1 fp32 scores per rank per (request, query), whatever S is
   (the format: helix.specs.dsa; its bytes, KVP B T (k + 1) 4 per layer, are the simulator's);
3. every rank finds the global k-th score v and keeps its own tokens scoring above v, and those
   equal to v when all the tokens tied at v fit in the k. Positions need not travel: a rank only
   selects its own tokens, and the threshold decides. A (k + 1)-th score equal to v on some rank
   means ties may hide beyond what was sent; then, as when more tokens tie at v than fit, the
   choice among the tied tokens is the reference's: Hugging Face takes ``torch.topk`` of the whole
   row, whose choice among equal scores (CPU: libstdc++'s introselect) depends on the entire row.
   Those rows alone gather every rank's scores (``dsa_topk_tie_all_gather``, data-dependent), rebuild
   the row exactly as the reference holds it (masked entries at float32's lowest value, as its
   additive mask leaves them) and run the same top-k on it.
4. sparse MLA over the selected local tokens, then the all-to-all and LSE combine as for MLA. A rank
   holding none of a query's selected tokens returns LSE -inf and output 0 for it (never NaN).

References: DeepSeek-V3.2-Exp report (DSA); Hugging Face transformers 5.24 ``DeepseekV32Indexer``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helix.errors import HelixInputError
from helix.runtime.decoder import rms_norm
from helix.runtime.kv_cache import kv_owner
from helix.runtime.mla import MLAConfig, MLAShard, rotary
from helix.specs.dsa import TOPK_PHASE, topk_candidates

# Only rows whose tokens tied at the k-th score do not all fit gather their whole row (data-dependent:
# the simulator's step has no such message). Per layer and rank: KVP x rows x max S_loc x 4 bytes.
TIE_PHASE = "dsa_topk_tie_all_gather"


@dataclass(frozen=True, slots=True)
class IndexerConfig:
    num_heads: int  # index_n_heads (H_I)
    head_dim: int  # index_head_dim (D_I)
    topk: int  # index_topk (k)
    norm_eps: float = 1e-6  # k_norm (LayerNorm) eps, as Hugging Face builds it

    def __post_init__(self) -> None:
        for name in ("num_heads", "head_dim", "topk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HelixInputError(f"model.index_{name}", f"must be an integer >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class IndexerShard:
    """One layer's indexer weights, replicated over KVP (every rank scores its own tokens)."""

    wq_b: torch.Tensor  # [H_I D_I, q_lora_rank]
    wk: torch.Tensor  # [D_I, H]
    k_norm_weight: torch.Tensor  # [D_I]
    k_norm_bias: torch.Tensor  # [D_I]
    weights_proj: torch.Tensor  # [H_I, H]


def shard_indexer(w, prefix: str) -> IndexerShard:
    """The indexer of ``prefix`` (e.g. "model.layers.0.self_attn.indexer.") from a HF state dict."""
    return IndexerShard(w(prefix + "wq_b.weight"), w(prefix + "wk.weight"), w(prefix + "k_norm.weight"),
                        w(prefix + "k_norm.bias"), w(prefix + "weights_proj.weight"))


def check_indexer(cfg: IndexerConfig, mla: MLAConfig) -> None:
    if mla.q_lora_rank < 1:
        raise HelixInputError("model.q_lora_rank", "must be >= 1 for DSA (the indexer's query reads q_a)")
    if cfg.head_dim < mla.d_rope:
        raise HelixInputError("model.index_head_dim", f"must be >= qk_rope_head_dim ({mla.d_rope}), "
                              f"got {cfg.head_dim}")


# ---------------------------------------------------------------- the indexer


def index_projection(x: torch.Tensor, positions: torch.Tensor, attn: MLAShard, w: IndexerShard,
                     cfg: IndexerConfig, mla: MLAConfig):
    """Indexer query [B, T, H_I, D_I], weights [B, T, H_I] and key [B, T, D_I] of tokens x [B, T, H]."""
    B, T, _ = x.shape
    d_r = mla.d_rope
    half_split = dataclasses.replace(mla, rope_interleave=False)  # the indexer's RoPE layout
    q_resid = rms_norm(F.linear(x, attn.q_a), attn.q_a_norm, mla.latent_norm_eps)  # [B, T, q_lora_rank]
    q = F.linear(q_resid, w.wq_b).view(B, T, cfg.num_heads, cfg.head_dim)
    q = torch.cat([rotary(q[..., :d_r], positions, attn.inv_freq, half_split), q[..., d_r:]], dim=-1)
    k = F.layer_norm(F.linear(x, w.wk), (cfg.head_dim,), w.k_norm_weight, w.k_norm_bias, cfg.norm_eps)
    k = torch.cat([rotary(k[..., :d_r], positions, attn.inv_freq, half_split), k[..., d_r:]], dim=-1)
    weights = F.linear(x, w.weights_proj).float() * cfg.num_heads ** -0.5  # [B, T, H_I]
    return q, weights, k


def index_scores(q: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor, q_positions: torch.Tensor,
                 kv_positions: torch.Tensor, cfg: IndexerConfig) -> torch.Tensor:
    """I [B, T, S_loc] fp32 of queries at [T] against this shard's index keys [B, S_loc, D_I] at [S_loc];
    -inf where the token is not visible (a later position)."""
    scores = torch.matmul(q.float(), keys.transpose(-1, -2).float().unsqueeze(1)) * cfg.head_dim ** -0.5
    scores = torch.matmul(weights.unsqueeze(-2), F.relu(scores)).squeeze(-2)  # [B, T, H_I, S] -> [B, T, S]
    visible = kv_positions[None, :] <= q_positions[:, None]  # [T, S_loc]
    return scores.masked_fill(~visible, float("-inf"))


# ---------------------------------------------------------------- the global top-k


def select_topk(comm, scores: torch.Tensor, q_positions: torch.Tensor, kv_positions: torch.Tensor, k: int,
                cache) -> tuple[torch.Tensor, dict[str, int]]:
    """keep [B, T, S_loc]: this rank's tokens among each query's global top-k (see the module docstring).

    ``cache`` (helix.runtime.kv_cache.KVCache) gives the ownership rule, to place every rank's scores
    in a tied row. Returns also {"rows", "tie_rows", "empty_rows"}: query rows, rows whose k-th score
    was tied beyond the k (resolved by the whole row), and rows this rank sees tokens of but keeps none.
    """
    B, T, S_loc = scores.shape
    n = topk_candidates(k)
    best = scores.topk(min(n, S_loc), dim=-1).values  # [B, T, <= k + 1], this shard's best
    cand = F.pad(best, (0, n - best.shape[-1]), value=float("-inf"))  # [B, T, k + 1]
    every = comm.all_gather(cand, "kvp", TOPK_PHASE)  # [KVP, B, T, k + 1]: KVP B T (k + 1) 4 bytes
    every = every.permute(1, 2, 0, 3).reshape(B, T, -1)  # [B, T, KVP (k + 1)]
    kth = every.topk(k, dim=-1).values[..., -1:]  # [B, T, 1]: the global k-th score (-inf: < k visible)
    above = (every > kth).sum(-1)  # [B, T]
    tied = (every == kth).sum(-1)
    ambiguous = torch.isfinite(kth[..., 0]) & (tied > k - above)  # more tokens tie at v than fit
    keep = (scores > kth) | ((scores == kth) & ~ambiguous[..., None])
    keep &= torch.isfinite(scores)  # [B, T, S_loc]
    if bool(ambiguous.any()):  # the same rows on every rank: all saw the same candidates
        keep[ambiguous] = _tie_break(comm, scores[ambiguous], int(q_positions.max()) + 1, kv_positions, k, cache)
    stats = {"rows": B * T, "tie_rows": int(ambiguous.sum()),
             "empty_rows": int((torch.isfinite(scores).any(-1) & ~keep.any(-1)).sum())}
    return keep, stats


def _tie_break(comm, rows: torch.Tensor, cached: int, kv_positions: torch.Tensor, k: int, cache) -> torch.Tensor:
    """keep [R, S_loc] for R tied rows [R, S_loc]: the reference's top-k over the whole row, rebuilt here.

    Positions [0, ``cached``) are cached; every rank's slots follow the ownership rule in position
    order, so each rank knows where every peer's scores go. The row is as long as the reference's
    (the prompt during the prefill, every cached token after), masked entries at float32's lowest value.
    """
    kvp = cache.kvp
    lowest = torch.finfo(torch.float32).min
    known = torch.arange(cached, device=rows.device)
    owner = kv_owner(known, cache.prompt_tokens, kvp, cache.block_tokens, cache.rule)  # [cached]
    s_pad = int(torch.bincount(owner, minlength=kvp).max())
    mine = torch.where(torch.isfinite(rows), rows, lowest)  # HF: score + finfo.min = finfo.min
    send = F.pad(mine, (0, s_pad - rows.shape[-1]), value=lowest)  # [R, max S_loc]
    every = comm.all_gather(send, "kvp", TIE_PHASE)  # [KVP, R, max S_loc]
    full = torch.full((rows.shape[0], max(cached, cache.prompt_tokens)), lowest, device=rows.device)
    for r in range(kvp):
        at = known[owner == r]
        full[:, at] = every[r, :, :at.numel()]
    # [R, k] global positions, as HF picks them: on CPU, where helix run's reference runs (CUDA's topk
    # breaks ties by another rule)
    chosen = full.cpu().topk(min(k, full.shape[-1]), dim=-1).indices.to(rows.device)
    return (kv_positions[None, :, None] == chosen[:, None, :]).any(-1)  # [R, S_loc]
