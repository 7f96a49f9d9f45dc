"""Bytes, FLOPs and shape features of one kernel from its shape: written once, used by the step's op
inventory (helix.cost.inventory) and by the fit to measured tables (helix.validation.perf_db).

Every function works on numpy arrays and scalars alike. Bytes are HBM bytes moved (read + written);
FLOPs count a multiply-add as 2. References: paper App. A (GEMV/attention rooflines),
absorbed MLA decode [S15][S17].
"""

from __future__ import annotations

import numpy as np

ACTIVATION_BYTES = 2.0  # activations enter and leave kernels in BF16 (every engine's decode path)
MLA_LATENT_DIM = 512  # DeepSeek-V3 kv_lora_rank: the attention tables' MLA geometry
MLA_ROPE_DIM = 64
MLA_NOPE_DIM = 128  # qk_nope_head_dim = v_head_dim: the W_UK / W_UV batched GEMMs' per-head width
GQA_TABLE_HEAD_DIM = 128  # the generation-attention rows the fit uses (Llama, Qwen, Mistral)


def _f(x):
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------- GEMM  (y[m, n] = x[m, k] W[k, n])

def gemm_bytes(m, n, k, weight_bytes_per_element):
    """Weights once, activations in and out in BF16."""
    m, n, k = _f(m), _f(n), _f(k)
    return n * k * weight_bytes_per_element + ACTIVATION_BYTES * (m * k + m * n)


def gemm_flops(m, n, k):
    return 2.0 * _f(m) * _f(n) * _f(k)


def gemm_features(m, n, k) -> dict:
    return {"tokens": m, "n": n, "k": k}


# ---------------------------------------------------------------- decode attention (one query token)

def gqa_decode_bytes(batch, kv_tokens, kv_heads, head_dim, kv_bytes_per_element, query_tokens=1):
    """K and V of every cached token of every local KV head [paper App. A: B x 2 x K x Hsz x S x b]."""
    kv = _f(batch) * _f(kv_tokens) * _f(kv_heads) * 2.0 * head_dim * kv_bytes_per_element
    return kv + ACTIVATION_BYTES * 2.0 * _f(batch) * query_tokens * _f(kv_heads) * head_dim


def gqa_decode_flops(batch, kv_tokens, q_heads, head_dim, query_tokens=1):
    """QK^T and PV: 4 Hsz per (query head, cached token) [paper App. A]."""
    return 4.0 * head_dim * _f(batch) * _f(q_heads) * _f(kv_tokens) * query_tokens


def gqa_decode_features(batch, kv_tokens, q_heads, kv_heads) -> dict:
    return {"batch": batch, "kv_tokens": kv_tokens, "q_heads": q_heads, "kv_heads": kv_heads}


def mla_decode_bytes(batch, kv_tokens, latent_dim, rope_dim, kv_bytes_per_element):
    """The latent cache (d_c + d_rope per token) is read once for every head (absorbed MLA)."""
    return _f(batch) * _f(kv_tokens) * (latent_dim + rope_dim) * kv_bytes_per_element


def mla_decode_flops(batch, kv_tokens, heads, latent_dim, rope_dim, query_tokens=1):
    """Absorbed MLA per (head, cached token): 2 (d_c + d_rope) for the scores, 2 d_c for PV."""
    return _f(batch) * _f(heads) * _f(kv_tokens) * (2.0 * (latent_dim + rope_dim) + 2.0 * latent_dim) * query_tokens


def mla_decode_features(batch, kv_tokens, heads) -> dict:
    return {"batch": batch, "kv_tokens": kv_tokens, "heads": heads}


def mla_bmm_bytes(tokens, heads, nope_dim, latent_dim, weight_bytes_per_element):
    """W_UK (or W_UV): one nope x latent matrix per head, plus the activations in and out."""
    t, h = _f(tokens), _f(heads)
    return h * nope_dim * latent_dim * weight_bytes_per_element + ACTIVATION_BYTES * t * h * (nope_dim + latent_dim)


def mla_bmm_flops(tokens, heads, nope_dim, latent_dim):
    return 2.0 * _f(tokens) * _f(heads) * nope_dim * latent_dim


def mla_bmm_features(tokens, heads) -> dict:
    return {"tokens": tokens, "heads": heads}


# ---------------------------------------------------------------- MoE experts (grouped GEMM)

def experts_touched(local_experts, tokens, topk, num_experts):
    """Expected distinct local experts hit by ``tokens`` tokens routed uniformly to ``topk`` of
    ``num_experts``: E_loc (1 - (1 - k/E)^tokens)."""
    return _f(local_experts) * (1.0 - (1.0 - _f(topk) / _f(num_experts)) ** _f(tokens))


def moe_bytes(touched, hidden, expert_width, weight_bytes_per_element, pairs):
    """Gate, up and down weights of every touched expert (width = expert FFN dim / TPF), and each
    token-expert pair's activations (hidden in, hidden out, 2 x width through the gate)."""
    w = 3.0 * _f(hidden) * _f(expert_width) * weight_bytes_per_element
    return _f(touched) * w + ACTIVATION_BYTES * _f(pairs) * (2.0 * _f(hidden) + 2.0 * _f(expert_width))


def moe_flops(pairs, hidden, expert_width):
    """Three GEMMs per (token, selected local expert)."""
    return 2.0 * 3.0 * _f(pairs) * _f(hidden) * _f(expert_width)


def moe_features(tokens, local_experts, expert_width, hidden, topk, experts) -> dict:
    return {"tokens": tokens, "local_experts": local_experts, "expert_width": expert_width, "hidden": hidden,
            "topk": topk, "experts": experts}


# ---------------------------------------------------------------- DSA lightning indexer (DeepSeek-V3.2)
# The index-key cache holds per token D_I FP8 (e4m3) values plus one fp32 scale per block of 128 values:
# 128 + 4 = 132 bytes for D_I = 128, whatever the latent KV cache's format. The layout of vLLM's
# DeepseekV32IndexerCache (head_size = index_head_dim + index_head_dim // quant_block_size * 4, uint8,
# quant_block_size = 128) and SGLang's NSATokenToKVPool (index_k_with_scale_buffer), as DeepSeek's
# inference code keeps it (k_cache float8_e4m3fn + k_scale_cache fp32 per 128) [S30].
INDEX_KEY_BYTES_PER_ELEMENT = 1.0  # FP8 e4m3
INDEX_SCALE_BLOCK = 128  # values per fp32 scale
INDEX_SCALE_BYTES = 4.0
INDEX_SCORE_BYTES = 4.0  # the index scores (logits) leave the kernel in fp32, as the top-k reads them


def index_key_bytes_per_token(index_head_dim):
    """Bytes one cached token's index key costs per layer: D_I x 1 + ceil(D_I / 128) x 4 (132 for D_I = 128)."""
    d = _f(index_head_dim)
    return d * INDEX_KEY_BYTES_PER_ELEMENT + np.ceil(d / INDEX_SCALE_BLOCK) * INDEX_SCALE_BYTES


def index_score_bytes(batch, kv_tokens, index_heads, index_head_dim, query_tokens=1):
    """The index-score kernel (DeepGEMM's paged MQA logits): every local index key once per request, the
    FP8 queries and fp32 head weights in, one fp32 score per (query token, cached token) out."""
    b, s, q = _f(batch), _f(kv_tokens), query_tokens
    keys = b * s * index_key_bytes_per_token(index_head_dim)
    inputs = b * q * _f(index_heads) * (_f(index_head_dim) * INDEX_KEY_BYTES_PER_ELEMENT + INDEX_SCALE_BYTES)
    return keys + inputs + b * q * s * INDEX_SCORE_BYTES


def index_score_flops(batch, kv_tokens, index_heads, index_head_dim, query_tokens=1):
    """Per (query token, head, cached token): q . k (2 D_I), ReLU, and the head-weighted sum (2)."""
    return _f(batch) * query_tokens * _f(index_heads) * _f(kv_tokens) * (2.0 * _f(index_head_dim) + 2.0)


# ---------------------------------------------------------------- elementwise (norms, RoPE, quantise, ...)

def elementwise_bytes(rows, width, read_bytes_per_element, write_bytes_per_element):
    return _f(rows) * _f(width) * (read_bytes_per_element + write_bytes_per_element)


def elementwise_features(rows, width) -> dict:
    return {"rows": rows, "width": width}
