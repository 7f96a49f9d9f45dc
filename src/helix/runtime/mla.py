"""MLA (DeepSeek-V2/V3 multi-head latent attention) in the absorbed decode form, sharded by KVP.

The cache holds, per token, the compressed latent c (kv_lora_rank = d_c, after its RMSNorm) and the
decoupled RoPE key k_r (qk_rope_head_dim = d_r, after RoPE): one "KV head" shared by all Q query
heads, so TPA = 1 and KVP = N [paper §3.1; reference/hardware_models.md §3.3]. W_UK is absorbed on
the query side and W_UV on the output side:

    score[h, s] = scale * (q_nope[h] . W_UK[h] c_s  +  q_r[h] . k_r,s)
                = scale * ((W_UK[h]^T q_nope[h]) . c_s  +  q_r[h] . k_r,s)
    out[h]      = W_UV[h] (sum_s p[h, s] c_s)

Each KVP rank attends over its own shard of the cache and returns, per (token, head), the
locally normalised latent output and its natural-log LSE; an empty shard returns zeros and -inf.

Exchanged tensor: the values AFTER W_UV ([B, Q, v_head_dim] + one fp32 LSE per (token, head)).
W_UV is linear and the LSE combine is a weighted sum, so applying it before the exchange is exact,
and it sends v_head_dim instead of kv_lora_rank per head (128 vs 512 for DeepSeek-V3: 4x less).
This is what ``helix.cost.messages`` charges (``ModelSpec.attention_value_dim`` = v_head_dim).

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

# ---------------------------------------------------------------- weights


@dataclass
class MLAShard:
    """One rank's MLA weights. Everything before the exchange is replicated over KVP (TPA = 1)."""

    q_a: torch.Tensor | None  # [q_lora_rank, H] (None: q_proj straight from H)
    q_a_norm: torch.Tensor | None  # [q_lora_rank]
    q_a_eps: float
    q_b: torch.Tensor  # [Q (d_nope + d_r), q_lora_rank or H]
    kv_a: torch.Tensor  # [d_c + d_r, H]
    kv_a_norm: torch.Tensor  # [d_c]
    kv_a_eps: float
    w_uk: torch.Tensor  # [Q, d_nope, d_c]  (absorbed into the query)
    w_uv: torch.Tensor  # [Q, v, d_c]       (absorbed into the output)
    o_proj: torch.Tensor  # [H, Q/N v]: the columns of the heads this rank owns after the exchange
    inv_freq: torch.Tensor  # [d_r / 2]
    rope_scaling: float  # cos/sin multiplier (YaRN attention factor)
    rope_interleave: bool
    softmax_scale: float  # qk_head_dim^-0.5, times mscale^2 under YaRN
    num_heads: int  # Q
    d_nope: int
    d_rope: int
    d_latent: int  # d_c
    v_head_dim: int


def check_mla_layout(tpa: int, kvp: int, num_heads: int) -> None:
    """MLA caches one latent head: TPA must be 1, and the heads must split over KVP for the exchange."""
    if tpa != 1:
        raise HelixInputError("tpa", f"must be 1 for MLA (one latent KV head shared by all query heads; "
                              f"TPA > 1 would duplicate the latent cache), got {tpa}")
    if num_heads % kvp:
        raise HelixInputError("kvp", f"must divide the query heads ({num_heads}) for the all-to-all, got {kvp}")


def shard_mla(attn, rotary, heads_rank: int, heads_split: int) -> MLAShard:
    """Slice a Hugging Face ``DeepseekV3Attention`` (plus the model's rotary embedding) for one rank.

    ``heads_split`` ranks share the O-projection by heads; this rank owns head block ``heads_rank``.
    """
    Q, dn, dr, dc, v = attn.num_heads, attn.qk_nope_head_dim, attn.qk_rope_head_dim, attn.kv_lora_rank, attn.v_head_dim
    kv_b = attn.kv_b_proj.weight.detach().view(Q, dn + v, dc)  # per head: [W_UK; W_UV]
    qh = Q // heads_split
    cols = slice(heads_rank * qh * v, (heads_rank + 1) * qh * v)
    lora = attn.q_lora_rank is not None
    return MLAShard(
        q_a=attn.q_a_proj.weight.detach().clone() if lora else None,
        q_a_norm=attn.q_a_layernorm.weight.detach().clone() if lora else None,
        q_a_eps=attn.q_a_layernorm.variance_epsilon if lora else 0.0,
        q_b=(attn.q_b_proj if lora else attn.q_proj).weight.detach().clone(),
        kv_a=attn.kv_a_proj_with_mqa.weight.detach().clone(),
        kv_a_norm=attn.kv_a_layernorm.weight.detach().clone(),
        kv_a_eps=attn.kv_a_layernorm.variance_epsilon,
        w_uk=kv_b[:, :dn].clone(),
        w_uv=kv_b[:, dn:].clone(),
        o_proj=attn.o_proj.weight.detach()[:, cols].clone(),
        inv_freq=rotary.inv_freq.detach().clone(),
        rope_scaling=float(rotary.attention_scaling),
        rope_interleave=bool(attn.config.rope_interleave),
        softmax_scale=float(attn.scaling),
        num_heads=Q, d_nope=dn, d_rope=dr, d_latent=dc, v_head_dim=v,
    )


# ---------------------------------------------------------------- projections


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Hugging Face's RMSNorm: normalise in fp32, cast back, then scale."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def rotary(x: torch.Tensor, positions: torch.Tensor, w: MLAShard) -> torch.Tensor:
    """RoPE on x [B, T, ..., d_r] at global positions [B, T], in Hugging Face's layout."""
    freqs = positions[..., None].float() * w.inv_freq  # [B, T, d_r/2]
    cos, sin = freqs.cos() * w.rope_scaling, freqs.sin() * w.rope_scaling
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    while cos.dim() < x.dim():  # broadcast over the head axis
        cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    if w.rope_interleave:  # pairs (x0, x1), (x2, x3)... rotated, output de-interleaved (as HF does)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def project(x: torch.Tensor, positions: torch.Tensor, w: MLAShard):
    """qkv_projection for tokens x [B, T, H] at positions [B, T], replicated over KVP.

    Returns the absorbed query q_c [B, T, Q, d_c], the rotated query q_r [B, T, Q, d_r], and the
    cache entries of these tokens: latent c [B, T, d_c] and rotated key k_r [B, T, d_r].
    """
    B, T, _ = x.shape
    q_in = x if w.q_a is None else rms_norm(F.linear(x, w.q_a), w.q_a_norm, w.q_a_eps)
    q = F.linear(q_in, w.q_b).view(B, T, w.num_heads, w.d_nope + w.d_rope)  # [B, T, Q, d_nope + d_r]
    q_nope, q_r = q.split([w.d_nope, w.d_rope], dim=-1)
    q_c = torch.einsum("btqn,qnc->btqc", q_nope, w.w_uk)  # [B, T, Q, d_c]: W_UK absorbed
    c, k_r = F.linear(x, w.kv_a).split([w.d_latent, w.d_rope], dim=-1)
    c = rms_norm(c, w.kv_a_norm, w.kv_a_eps)  # [B, T, d_c]
    return q_c, rotary(q_r, positions, w), c, rotary(k_r, positions, w)


# ---------------------------------------------------------------- local attention over one KV shard


def latent_attention(q_c, q_r, c, k_r, q_pos, kv_pos, scale: float):
    """local_attention of queries [B, T, Q, .] over one cache shard c [B, S_loc, d_c], k_r [B, S_loc, d_r].

    ``kv_pos`` [B, S_loc] are the global positions of the shard's tokens (-1: slot unused); a query
    at position p sees keys at positions <= p. Returns the locally normalised latent output
    [B, T, Q, d_c] and the natural-log LSE [B, T, Q] (fp32); a query that sees no key gets zeros and
    -inf, never NaN.
    """
    scores = (torch.einsum("btqc,bsc->btqs", q_c, c) + torch.einsum("btqr,bsr->btqs", q_r, k_r)) * scale
    visible = (kv_pos[:, None, :] >= 0) & (kv_pos[:, None, :] <= q_pos[:, :, None])  # [B, T, S_loc]
    scores = scores.float().masked_fill(~visible[:, :, None, :], float("-inf"))  # [B, T, Q, S_loc]
    lse = torch.logsumexp(scores, dim=-1)  # [B, T, Q]; -inf where nothing is visible
    p = torch.exp(scores - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])  # 0 where masked
    out = torch.einsum("btqs,bsc->btqc", p.to(c.dtype), c)  # [B, T, Q, d_c]
    return out, lse


def values(out_latent: torch.Tensor, w: MLAShard) -> torch.Tensor:
    """W_UV on the latent output: [B, T, Q, d_c] -> [B, T, Q, v] (before the exchange; exact)."""
    return torch.einsum("btqc,qvc->btqv", out_latent, w.w_uv)


def o_projection(attn_heads: torch.Tensor, w: MLAShard) -> torch.Tensor:
    """This rank's heads [B, T, Q/N, v] times its W_O columns: a partial [B, T, H] (summed over N)."""
    B, T = attn_heads.shape[:2]
    return F.linear(attn_heads.reshape(B, T, -1), w.o_proj)
