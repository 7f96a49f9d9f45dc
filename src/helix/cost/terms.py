"""One function per term of the decode step: the ops each term launches, with their bytes and FLOPs.

Every function takes a ``helix.cost.op_types.Shape`` (layout, batch and context arrays) and returns
a list of ``Op``; ``helix.cost.inventory.layer_ops`` composes them. Notation as in the paper (App. A):
B_loc = ceil(B/DP) requests per attention group, q query tokens per request (1, or 1 + K with MTP),
T = B_loc q tokens through attention, S_loc = ceil(S/KVP), TPA heads split, G the FFN's TP group.

  norms            fused residual add + RMSNorm before attention and FFN; MLA's q/kv latent norms; final norm
  qkv_projection   GQA: one fused QKV GEMM, n = (Q/TPA + 2 ceil(K/TPA)) Hsz [paper App. A]; MLA: the fused
                   q/kv down-projection (replicated across KVP [paper §2.1.1]), the q up-projection and the
                   W_UK batched GEMM (absorbed MLA [S17])
  rope_kv_write    RoPE on q and k; the KV-cache append (one KVP rank per token: staged KV concatenation)
  attention        KV read B_loc S_loc ceil(K/TPA) 2 Hsz b_kv (GQA) or B_loc S_loc (d_c + d_rope) b_kv (MLA)
                   [paper App. A]
  combine          the LSE rescale of the KVP partials received in the all-to-all (Helix/Medha, KVP > 1)
  o_projection     MLA's W_UV batched GEMM, then O over TPA x KVP (Helix) or TPA [paper §2.2]
  ffn              gate/up GEMM, SwiGLU, down GEMM over G = TPF x EP (Helix, TP) [paper App. A]
  moe_router       router GEMM and top-k over the E experts
  moe_experts      the fused MoE op (permute, grouped GEMMs, SwiGLU, finalize; the tables time it whole)
  moe_shared_experts  the shared expert as a dense FFN over G
  embedding_lm_head   embedding gather, vocabulary-parallel LM head GEMM
  sampling         the top-1 over the local vocabulary shard
Activation quantisation before an FP8/FP4 GEMM is timed inside that GEMM: the tables measure
TensorRT-LLM's / SGLang's Linear forward on a BF16 input, quantisation included.
"""

from __future__ import annotations

import numpy as np

from helix.cost import kernels, memory
from helix.cost.dsa_terms import sparse_attention_ops
from helix.cost.messages import LSE_BYTES, dense_ffn_group, o_projection_group, vocab_group
from helix.cost.op_types import A, Op, Shape, elementwise_op, gemm_op
from helix.cost.ops import ceil_div


def norm_ops(s: Shape, name: str) -> list[Op]:
    """Fused residual add + RMSNorm over the hidden state: reads hidden and residual, writes both."""
    return [elementwise_op(s, name, "norms", s.attention_tokens, s.model.hidden_dim, 2 * A, 2 * A)]


def qkv_projection_ops(s: Shape) -> list[Op]:
    m, T = s.model, s.attention_tokens
    heads = m.num_query_heads / s.tpa
    if not m.is_mla:
        n = (heads + 2 * ceil_div(m.num_kv_heads, s.tpa)) * m.head_dim
        return [gemm_op(s, "qkv_gemm", "qkv_projection", T, n, m.hidden_dim, "attention_weights")]
    down = m.kv_lora_rank + m.qk_rope_head_dim + m.q_lora_rank
    q_in = m.q_lora_rank or m.hidden_dim
    ops = [gemm_op(s, "qkv_a_gemm", "qkv_projection", T, down + 0 * heads, m.hidden_dim, "attention_weights",
                   note="q and kv down-projections fused, replicated on every KVP rank")]
    if m.q_lora_rank:
        ops.append(elementwise_op(s, "q_a_norm", "norms", T, m.q_lora_rank, A, A))
    ops.append(elementwise_op(s, "kv_a_norm", "norms", T, m.kv_lora_rank, A, A))
    ops.append(gemm_op(s, "q_b_gemm", "qkv_projection", T, heads * (m.qk_nope_head_dim + m.qk_rope_head_dim), q_in,
                       "attention_weights", launches=0))
    ops.append(_mla_bmm(s, "w_uk_bmm", "qkv_projection", "mla_bmm_pre", T, heads, m.qk_nope_head_dim))
    return ops


def _mla_bmm(s: Shape, name: str, term: str, table: str, tokens, heads, nope_dim: int) -> Op:
    m, b = s.model, s.bytes_of("attention_weights")
    return Op(name, term, "gemm", table, s.fmt("attention_weights"), s.fmt("compute"),
              kernels.mla_bmm_bytes(tokens, heads, nope_dim, m.kv_lora_rank, b),
              np.asarray(heads, dtype=np.float64) * nope_dim * m.kv_lora_rank * b,
              kernels.mla_bmm_flops(tokens, heads, nope_dim, m.kv_lora_rank), kernels.mla_bmm_features(tokens, heads),
              0, "absorbed MLA: one nope x latent matrix per head")


def rope_kv_write_ops(s: Shape) -> list[Op]:
    m, T = s.model, s.attention_tokens
    local_heads = ceil_div(m.cache_heads, s.tpa)
    if m.is_mla:
        rope_width = (m.num_query_heads / s.tpa + 1) * m.qk_rope_head_dim
        cache_width = local_heads * (m.kv_lora_rank + m.qk_rope_head_dim)
    else:
        rope_width = (m.num_query_heads / s.tpa + local_heads) * m.head_dim
        cache_width = local_heads * 2 * m.head_dim
    # staged KV concatenation: each new token is appended on one KVP rank (round robin)
    writers = ceil_div(s.batch, s.dp * s.kvp).astype(np.float64) * s.query_tokens
    return [elementwise_op(s, "rope", "rope_kv_write", T, rope_width, A, A),
            elementwise_op(s, "kv_cache_write", "rope_kv_write", writers, cache_width, A, s.bytes_of("kv_cache"))]


def attention_ops(s: Shape) -> list[Op]:
    m, B_loc, S_loc, q = s.model, s.requests_per_rank, s.kv_tokens_per_rank, s.query_tokens
    heads = m.num_query_heads / s.tpa
    b_kv = s.bytes_of("kv_cache")
    kv_read = B_loc * S_loc * memory.attention_kv_bytes_per_token_per_layer_per_gpu(m, s.precision, s.tpa)
    if m.is_dsa:  # each query token reads its own selection: q rows of one token each
        return sparse_attention_ops(s)
    if m.is_mla:
        return [Op("attention", "attention", "attention", "mla", s.fmt("kv_cache"), s.fmt("attention_compute"),
                   kernels.mla_decode_bytes(B_loc, S_loc, m.kv_lora_rank, m.qk_rope_head_dim, b_kv), kv_read,
                   kernels.mla_decode_flops(B_loc, S_loc, heads, m.kv_lora_rank, m.qk_rope_head_dim, q),
                   kernels.mla_decode_features(B_loc, S_loc, heads * q), 1,
                   "the latent cache is read once for all local heads; TPA > 1 duplicates it")]
    kv_heads = ceil_div(m.num_kv_heads, s.tpa)
    return [Op("attention", "attention", "attention", "attention", s.fmt("kv_cache"), s.fmt("attention_compute"),
               kernels.gqa_decode_bytes(B_loc, S_loc, kv_heads, m.head_dim, b_kv, q), kv_read,
               kernels.gqa_decode_flops(B_loc, S_loc, heads, m.head_dim, q),
               kernels.gqa_decode_features(B_loc, S_loc, heads, kv_heads), 1)]


def kvp_partial_bytes(s: Shape):
    """What one rank sends in the KVP exchange: every local head's output (after W_UV) and LSE."""
    m = s.model
    return s.attention_tokens * (m.num_query_heads / s.tpa) * (m.attention_value_dim * s.bytes_of("communication")
                                                               + LSE_BYTES)


def combine_ops(s: Shape) -> list[Op]:
    """LSE rescale and sum of the KVP partials (Helix, Medha); no op where KVP = 1, nor where the stack
    fuses it into the all-to-all's receive or the O-projection's prologue (``fused_combine``: its few KB
    are then read inside that kernel, at no launch of their own)."""
    if s.strategy not in ("helix", "medha") or s.fused_combine:
        return []
    m = s.model
    on = np.asarray(s.kvp) > 1
    partial = kvp_partial_bytes(s)
    rows = s.attention_tokens
    width = m.num_query_heads * m.attention_value_dim / (s.tpa * s.kvp)  # the heads this rank combines
    return [Op("lse_combine", "combine", "elementwise", "elementwise", "bf16", "bf16",
               np.where(on, partial + kernels.elementwise_bytes(rows, width, 0.0, A), 0.0), np.where(on, partial, 0.0),
               0.0, kernels.elementwise_features(rows, width), 1, "reads the received partials and LSEs", active=on)]


def o_projection_ops(s: Shape) -> list[Op]:
    m, T = s.model, s.attention_tokens
    ops = []
    if m.is_mla:
        ops.append(_mla_bmm(s, "w_uv_bmm", "o_projection", "mla_bmm_post", T, m.num_query_heads / s.tpa,
                            m.v_head_dim))
    k = m.num_query_heads * m.attention_value_dim / o_projection_group(s.strategy, s.tpa, s.kvp)
    ops.append(gemm_op(s, "o_gemm", "o_projection", T, m.hidden_dim + 0 * k, k, "attention_weights"))
    return ops


def _swiglu_ops(s: Shape, prefix: str, term: str, tokens, width, weight_class: str) -> list[Op]:
    H = s.model.hidden_dim
    return [gemm_op(s, f"{prefix}gate_up_gemm", term, tokens, 2 * width, H, weight_class),
            elementwise_op(s, f"{prefix}swiglu", term, tokens, width, 2 * A, A),
            gemm_op(s, f"{prefix}down_gemm", term, tokens, H + 0 * width, width, weight_class)]


def dense_ffn_ops(s: Shape) -> list[Op]:
    width = s.model.ffn_dim / dense_ffn_group(s.strategy, s.tpf, s.ep)
    return _swiglu_ops(s, "", "ffn", s.ffn_tokens, width, "ffn_weights")


def moe_router_ops(s: Shape) -> list[Op]:
    m, T = s.model, s.ffn_tokens
    return [gemm_op(s, "router_gemm", "moe_router", T, m.num_experts + 0 * T, m.hidden_dim, "router_weights"),
            elementwise_op(s, "topk_gating", "moe_router", T, m.num_experts, 4.0, 0.0,
                           note="grouped top-k over fp32 logits")]


EXPERT_ROUTINGS = ("auto", "power_law", "balanced")


def balanced_routing(s: Shape) -> bool:
    """Whether the experts are timed at balanced routing: asked for, or (auto) EPLB's redundant slots."""
    return s.expert_routing == "balanced" or (s.expert_routing == "auto" and s.redundant_experts > 0)


def moe_expert_ops(s: Shape) -> list[Op]:
    """The hottest EP rank: imbalance x its fair share of token-expert pairs, over its local slots."""
    m = s.model
    slots = m.num_experts + s.redundant_experts
    local = slots / np.asarray(s.ep, dtype=np.float64)
    tokens = s.expert_imbalance * np.asarray(s.batch, dtype=np.float64) * s.query_tokens
    width = m.expert_ffn_dim / np.asarray(s.tpf, dtype=np.float64)
    touched = kernels.experts_touched(local, tokens, m.experts_per_token, slots)
    all_tokens = np.asarray(s.batch, dtype=np.float64) * s.query_tokens
    pairs = np.minimum(tokens * m.experts_per_token / s.ep, all_tokens * np.minimum(m.experts_per_token, local))
    b = s.bytes_of("ffn_weights")
    # DP attention + EP runs the DeepEP path (tokens arrive by dispatch, not all on every rank); its own
    # measured table where the engine has one, the regular MoE table otherwise (OpModel.form's fallback).
    # Redundant slots mean EPLB: the tables measured at balanced routing (helix.validation.perf_db.forms
    # EPLB_ROUTING says why), any residual skew left to expert_imbalance; expert_routing overrides.
    table = ("moe_deepep" if s.strategy == "dp_ep" else "moe") + ("_eplb" if balanced_routing(s) else "")
    return [Op("experts", "moe_experts", "grouped_gemm", table, s.fmt("ffn_weights"), s.fmt("compute"),
               kernels.moe_bytes(touched, m.hidden_dim, width, b, pairs), touched * 3 * m.hidden_dim * width * b,
               kernels.moe_flops(pairs, m.hidden_dim, width),
               kernels.moe_features(tokens, local, width, m.hidden_dim, m.experts_per_token, slots), 2,
               "permute, grouped GEMMs, SwiGLU and finalize in one fused op")]


def moe_shared_expert_ops(s: Shape) -> list[Op]:
    m = s.model
    if not m.num_shared_experts:
        return []
    width = m.num_shared_experts * m.expert_ffn_dim / dense_ffn_group(s.strategy, s.tpf, s.ep)
    return _swiglu_ops(s, "shared_", "moe_shared_experts", s.ffn_tokens, width, "ffn_weights")


def embedding_lm_head_ops(s: Shape) -> list[Op]:
    m, T = s.model, s.attention_tokens
    vg = vocab_group(s.strategy, s.tpa, s.kvp, s.dp, s.tpf, s.ep)
    return [elementwise_op(s, "embedding", "embedding_lm_head", T, m.hidden_dim, A, A, launches=1,
                           note="vocabulary-parallel gather (zeros for other shards' rows)"),
            elementwise_op(s, "final_norm", "norms", T, m.hidden_dim, A, A),
            gemm_op(s, "lm_head_gemm", "embedding_lm_head", T, m.vocab_size / vg, m.hidden_dim, "embedding_weights")]


def sampling_ops(s: Shape) -> list[Op]:
    vg = vocab_group(s.strategy, s.tpa, s.kvp, s.dp, s.tpf, s.ep)
    return [elementwise_op(s, "sampling", "sampling", s.attention_tokens, s.model.vocab_size / vg, A, 0.0,
                           note="top-1 (max logit, index) of the local vocabulary shard")]


def mtp_projection_ops(s: Shape) -> list[Op]:
    """DeepSeek's MTP module joins the embedding and the last hidden state: a 2H -> H GEMM per draft."""
    H = s.model.hidden_dim
    return [gemm_op(s, "mtp_eh_gemm", "mtp_draft", s.requests_per_rank, H + 0 * s.requests_per_rank, 2 * H,
                    "attention_weights")]
