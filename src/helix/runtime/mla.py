"""MLA (DeepSeek-V2/V3 multi-head latent attention) in the absorbed decode form, sharded by KVP.

The cache holds, per token, the compressed latent c (kv_lora_rank = d_c, after its RMSNorm) and the
decoupled RoPE key k_r (qk_rope_head_dim = d_r, after RoPE): one "KV head" shared by all Q query
heads, so TPA = 1 and KVP = N [paper §3.1; DeepSeek-V3's absorb mode [S17]]. W_UK is absorbed on
the query side and W_UV on the output side:

    score[h, s] = scale * (q_nope[h] . W_UK[h] c_s  +  q_r[h] . k_r,s)
                = scale * ((W_UK[h]^T q_nope[h]) . c_s  +  q_r[h] . k_r,s)
    out[h]      = W_UV[h] (sum_s p[h, s] c_s)

Each KVP rank attends over its own shard of the cache and returns, per (token, head), the
locally normalised latent output and its natural-log LSE; an empty shard returns zeros and -inf.

Exchanged tensor: the values AFTER W_UV ([B, Q, v_head_dim] + one fp32 LSE per (token, head)).
W_UV is linear and the LSE combine is a weighted sum, so applying it before the exchange is exact,
and it sends v_head_dim instead of kv_lora_rank per head (128 vs 512 for DeepSeek-V3: 4x less).
This is what the simulator's step charges (``ModelSpec.attention_value_dim`` = v_head_dim).

RoPE, the softmax scale (YaRN mscale^2 when rope_scaling has mscale_all_dim) and the interleaved
rotary layout are taken from the Hugging Face module, so the two agree by construction.

References: paper §2.1 (KVP attention, LSE combine), §3.1 (MLA: TPA = 1); DeepSeek-V2 §2.1
(absorption); Hugging Face transformers 5.24 ``DeepseekV3Attention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helix.errors import HelixInputError
from helix.runtime.decoder import rms_norm

# ---------------------------------------------------------------- weights


@dataclass(frozen=True, slots=True)
class MLAConfig:
    """MLA sizes and the RoPE / softmax constants, as plain values (computed by Hugging Face code once)."""

    num_heads: int  # Q
    d_nope: int  # qk_nope_head_dim
    d_rope: int  # qk_rope_head_dim (d_r)
    d_latent: int  # kv_lora_rank (d_c)
    v_head_dim: int  # v
    q_lora_rank: int  # 0: W_Q straight from H
    latent_norm_eps: float  # eps of q_a_layernorm and kv_a_layernorm (HF's RMSNorm default, 1e-6)
    rope_inv_freq: tuple[float, ...]  # [d_r / 2], YaRN-scaled when configured
    rope_scaling: float  # cos/sin multiplier (YaRN attention factor)
    rope_interleave: bool
    softmax_scale: float  # qk_head_dim^-0.5, times mscale^2 under YaRN with mscale_all_dim


@dataclass(frozen=True, slots=True)
class MLAShard:
    """One rank's MLA weights. Everything before the exchange is replicated over KVP (TPA = 1)."""

    q_a: torch.Tensor | None  # [q_lora_rank, H] (None: no query compression)
    q_a_norm: torch.Tensor | None  # [q_lora_rank]
    q_b: torch.Tensor  # [Q (d_nope + d_r), q_lora_rank or H]
    kv_a: torch.Tensor  # [d_c + d_r, H]
    kv_a_norm: torch.Tensor  # [d_c]
    w_uk: torch.Tensor  # [Q, d_nope, d_c]  (absorbed into the query)
    w_uv: torch.Tensor  # [Q, v, d_c]       (absorbed into the output)
    o_proj: torch.Tensor  # [H, Q/N v]: the columns of the heads this rank owns after the exchange
    inv_freq: torch.Tensor  # [d_r / 2]


def check_mla_layout(tpa: int, kvp: int, num_heads: int) -> None:
    """MLA caches one latent head: TPA must be 1, and the heads must split over KVP for the exchange."""
    if tpa != 1:
        raise HelixInputError("tpa", f"must be 1 for MLA (one latent KV head shared by all query heads; "
                              f"TPA > 1 would duplicate the latent cache), got {tpa}")
    if num_heads % kvp:
        raise HelixInputError("kvp", f"must divide the query heads ({num_heads}) for the all-to-all, got {kvp}")


def shard_mla(w, prefix: str, cfg: MLAConfig, heads_rank: int, heads_split: int) -> MLAShard:
    """One rank's MLA weights from a Hugging Face state dict (``w(key)`` returns fp32 tensors).

    ``heads_split`` ranks share the O-projection by heads; this rank owns head block ``heads_rank``.
    """
    Q, dn, dc, v = cfg.num_heads, cfg.d_nope, cfg.d_latent, cfg.v_head_dim
    kv_b = w(prefix + "kv_b_proj.weight").view(Q, dn + v, dc)  # per head: [W_UK; W_UV]
    qh = Q // heads_split
    lora = cfg.q_lora_rank > 0
    return MLAShard(
        q_a=w(prefix + "q_a_proj.weight") if lora else None,
        q_a_norm=w(prefix + "q_a_layernorm.weight") if lora else None,
        q_b=w(prefix + ("q_b_proj.weight" if lora else "q_proj.weight")),
        kv_a=w(prefix + "kv_a_proj_with_mqa.weight"),
        kv_a_norm=w(prefix + "kv_a_layernorm.weight"),
        w_uk=kv_b[:, :dn].contiguous(),
        w_uv=kv_b[:, dn:].contiguous(),
        o_proj=w(prefix + "o_proj.weight")[:, heads_rank * qh * v:(heads_rank + 1) * qh * v].contiguous(),
        inv_freq=torch.tensor(cfg.rope_inv_freq, dtype=torch.float32, device=kv_b.device),
    )


# ---------------------------------------------------------------- projections


def rotary(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, cfg: MLAConfig) -> torch.Tensor:
    """RoPE on x [B, T, (heads,) d_r] at global positions [T], in Hugging Face's layout."""
    freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, d_r/2]
    cos, sin = freqs.cos() * cfg.rope_scaling, freqs.sin() * cfg.rope_scaling
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if x.dim() == 4:  # broadcast over the head axis
        cos, sin = cos[:, None], sin[:, None]
    if cfg.rope_interleave:  # pairs (x0, x1), (x2, x3)... rotated, output de-interleaved (as HF does)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def project(x: torch.Tensor, positions: torch.Tensor, w: MLAShard, cfg: MLAConfig):
    """qkv_projection for tokens x [B, T, H] at global positions [T], replicated over KVP.

    Returns the absorbed query q_c [B, T, Q, d_c], the rotated query q_r [B, T, Q, d_r], and the
    cache entries of these tokens: latent c [B, T, d_c] and rotated key k_r [B, T, d_r].
    """
    B, T, _ = x.shape
    eps = cfg.latent_norm_eps
    q_in = x if w.q_a is None else rms_norm(F.linear(x, w.q_a), w.q_a_norm, eps)  # [B, T, q_lora_rank]
    q = F.linear(q_in, w.q_b).view(B, T, cfg.num_heads, cfg.d_nope + cfg.d_rope)  # [B, T, Q, d_nope + d_r]
    q_nope, q_r = q.split([cfg.d_nope, cfg.d_rope], dim=-1)
    q_c = torch.einsum("btqn,qnc->btqc", q_nope, w.w_uk)  # [B, T, Q, d_c]: W_UK absorbed
    c, k_r = F.linear(x, w.kv_a).split([cfg.d_latent, cfg.d_rope], dim=-1)
    c = rms_norm(c, w.kv_a_norm, eps)  # [B, T, d_c]
    return q_c, rotary(q_r, positions, w.inv_freq, cfg), c, rotary(k_r, positions, w.inv_freq, cfg)


# ---------------------------------------------------------------- local attention over one KV shard


def latent_attention(q_c, q_r, c, k_r, q_positions, kv_positions, scale: float, keep=None):
    """local_attention of queries [B, T, Q, .] over one cache shard c [B, S_loc, d_c], k_r [B, S_loc, d_r].

    A query at global position p sees the shard's keys at global positions <= p (``kv_positions``
    [S_loc], not local indices), and of those only the ones ``keep`` [B, T, S_loc] marks, if given
    (DSA's top-k selection, helix.runtime.dsa). Returns the locally normalised latent output
    [B, T, Q, d_c] and the natural-log LSE [B, T, Q] (fp32); a query that sees no key gets zeros and
    -inf, never NaN.
    """
    scores = torch.einsum("btqc,bsc->btqs", q_c, c) + torch.einsum("btqr,bsr->btqs", q_r, k_r)
    scores = scores.float() * scale  # [B, T, Q, S_loc]
    visible = (kv_positions[None, :] <= q_positions[:, None])[None]  # [1, T, S_loc]
    if keep is not None:
        visible = visible & keep  # [B, T, S_loc]
    scores = scores.masked_fill(~visible[:, :, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [B, T, Q]; -inf where nothing is visible
    p = torch.exp(scores - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])  # 0 where masked
    return torch.einsum("btqs,bsc->btqc", p.to(c.dtype), c), lse  # [B, T, Q, d_c], [B, T, Q]


def values(out_latent: torch.Tensor, w: MLAShard) -> torch.Tensor:
    """W_UV on the latent output: [B, T, Q, d_c] -> [B, T, Q, v] (before the exchange; exact)."""
    return torch.einsum("btqc,qvc->btqv", out_latent, w.w_uv)


# ---------------------------------------------------------------- the KVP exchange


def mla_attend(q_c, q_r, c, k_r, q_positions, kv_positions, w: MLAShard, cfg: MLAConfig, keep=None):
    """The ``attend(b0, b1)`` of ``helix.runtime.attention.helix_attention`` for MLA.

    Latent attention of requests [b0, b1) over this rank's cache shard, then W_UV: returns the
    values [b1-b0, T, Q, v] (partial over KVP) and the LSE [b1-b0, T, Q]. ``helix_attention`` packs
    them as [KVP, Bc, T, Q/N, v + 1] fp32, so each rank sends B T Q (v + 1) 4 bytes per layer,
    independent of S (the simulator's kvp_all_to_all), and returns [B, T, Q/N, v], exact.
    ``keep`` [B, T, S_loc] (DSA) restricts each query to the selected tokens of this shard.
    """
    def attend(b0: int, b1: int):
        out, lse = latent_attention(q_c[b0:b1], q_r[b0:b1], c[b0:b1], k_r[b0:b1], q_positions, kv_positions,
                                    cfg.softmax_scale, None if keep is None else keep[b0:b1])  # [Bc, T, Q, d_c]
        return values(out, w), lse  # [Bc, T, Q, v]: W_UV before the exchange (exact, 4x fewer bytes)

    return attend


def o_projection(attn_heads: torch.Tensor, w: MLAShard) -> torch.Tensor:
    """This rank's heads [B, T, Q/N, v] times its W_O columns: a partial [B, T, H] (summed over N)."""
    B, T = attn_heads.shape[:2]
    return F.linear(attn_heads.reshape(B, T, -1), w.o_proj)
