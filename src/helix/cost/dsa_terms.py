"""DeepSeek-V3.2's sparse attention (DSA) in the op inventory: the lightning indexer, the top-k, the sparse MLA.

Per layer and rank, T = B_loc q query tokens, S_loc = ceil(S/KVP) local cached tokens, H_I indexer heads
of D_I dims, k = index_topk [S30] (helix.runtime.dsa: exact against HF):

  indexer           index_q_gemm (q_a -> H_I D_I), index_weights_gemm (H -> H_I), index_k_gemm (H -> D_I),
                    index_k_norm (LayerNorm), index_rope (the first d_rope dims of q and k, half-split),
                    index_k_cache_write (the new token's FP8 key and scale, on its owner KVP rank),
                    index_scores (every local index key, 132 bytes each, once per request)
  index_topk        index_topk_local (each rank's k + 1 best of its S_loc scores), index_topk_merge (the
                    global k-th score from the KVP (k + 1) gathered candidates; KVP > 1 only)
  sparse_attention  absorbed MLA over the selected tokens a rank holds, per query token:
                    min(S_loc, ceil(k/KVP)) (helix.cost.op_types.Shape.selected_tokens_per_rank)
The exchange between the two top-k ops is ``dsa_topk_all_gather`` (helix.cost.messages).

The indexer's weights are replicated on every attention rank (KVP and TPA), as vLLM's indexer holds
them (ReplicatedLinear) [S30]; they are in the attention_weights format. Timing, with no table of their own
fitted (aiconfigurator-core 0.12 has DSA tables, not fitted here): the projections by the GEMM table,
the sparse MLA by the MLA decode table at the selected token count (FlashMLA's sparse decode kernel is
the dense one gathering its tokens by index), and the rest — the index-score kernel included, a
streaming read of the index keys (DeepGEMM's paged MQA logits), memory-bound at one query token per
request (132 bytes against 16.5 kFLOP per token, below the FP8 ridge) — by the elementwise (streaming)
form on its bytes, with its FLOPs bounding it at the FP8 tensor-core peak.
"""

from __future__ import annotations

import numpy as np

from helix.cost import kernels
from helix.cost.messages import INDEX_SCORE_BYTES, topk_candidates
from helix.cost.op_types import A, Op, Shape, elementwise_op, gemm_op
from helix.cost.ops import ceil_div

INDEX_POSITION_BYTES = 4  # int32 token positions of the local candidates


def indexer_ops(s: Shape) -> list[Op]:
    """The lightning indexer: its projections, its key's norm, RoPE and cache write, and the index scores."""
    m = s.model
    if not m.is_dsa:
        return []
    T, H_I, D_I = s.attention_tokens, m.index_heads, m.index_head_dim
    writers = ceil_div(s.batch, s.dp * s.kvp).astype(np.float64) * s.query_tokens  # staged, as the latent
    key_bytes = kernels.index_key_bytes_per_token(D_I)
    return [gemm_op(s, "index_q_gemm", "indexer", T, H_I * D_I + 0 * T, m.q_lora_rank, "attention_weights",
                    note="wq_b on the MLA query's normed q_a, replicated on every attention rank"),
            gemm_op(s, "index_weights_gemm", "indexer", T, H_I + 0 * T, m.hidden_dim, "attention_weights",
                    launches=0, note="weights_proj: one weight per indexer head"),
            gemm_op(s, "index_k_gemm", "indexer", T, D_I + 0 * T, m.hidden_dim, "attention_weights", launches=0,
                    note="wk: one index key per token"),
            elementwise_op(s, "index_k_norm", "indexer", T, D_I, A, A, note="LayerNorm of the index key"),
            elementwise_op(s, "index_rope", "indexer", T, (H_I + 1) * m.qk_rope_head_dim, A, A),
            elementwise_op(s, "index_k_cache_write", "indexer", writers, D_I, A, key_bytes / D_I,
                           note="FP8 key + fp32 scale per 128 dims, on the token's owner KVP rank"),
            index_scores_op(s)]


def index_scores_op(s: Shape) -> Op:
    """I[t, s] = sum_h w[t, h] ReLU(q_I[t, h] . k_I[s]) over the S_loc local index keys, fp32 out."""
    m, B_loc, S_loc, q = s.model, s.requests_per_rank, s.kv_tokens_per_rank, s.query_tokens
    keys = B_loc * S_loc * kernels.index_key_bytes_per_token(m.index_head_dim)
    return Op("index_scores", "indexer", "elementwise", "elementwise", "fp8", "fp8",
              kernels.index_score_bytes(B_loc, S_loc, m.index_heads, m.index_head_dim, q), keys,
              kernels.index_score_flops(B_loc, S_loc, m.index_heads, m.index_head_dim, q),
              kernels.elementwise_features(B_loc * S_loc, m.index_head_dim + 0 * B_loc), 1,
              "reads every local index key once per request (S/KVP: the read that still grows with S)")


def index_topk_ops(s: Shape) -> list[Op]:
    """Each rank's k + 1 best local scores (with positions), then, under KVP, the global k-th score from
    the gathered candidates and this rank's kept tokens (helix.runtime.dsa.select_topk)."""
    m = s.model
    if not m.is_dsa:
        return []
    T, S_loc = s.attention_tokens, s.kv_tokens_per_rank
    n = topk_candidates(m.index_topk)
    kept = np.minimum(n, S_loc)
    local = Op("index_topk_local", "index_topk", "elementwise", "elementwise", "bf16", "bf16",
               T * (S_loc * INDEX_SCORE_BYTES + kept * (INDEX_SCORE_BYTES + INDEX_POSITION_BYTES)), 0.0, 0.0,
               kernels.elementwise_features(T, S_loc), 1, "one pass over the fp32 scores; k + 1 kept")
    on = np.asarray(s.kvp) > 1
    merge_bytes = T * (s.kvp * n * INDEX_SCORE_BYTES + s.selected_tokens_per_rank * INDEX_POSITION_BYTES)
    merge = Op("index_topk_merge", "index_topk", "elementwise", "elementwise", "bf16", "bf16",
               np.where(on, merge_bytes, 0.0), 0.0, 0.0, kernels.elementwise_features(T, s.kvp * n), 1,
               "the global k-th score of KVP (k + 1) candidates; this rank's tokens above it", active=on)
    return [local, merge]


def sparse_attention_ops(s: Shape) -> list[Op]:
    """Absorbed MLA over the selected local tokens: each query token its own selection (B_loc q rows)."""
    m, rows, sel = s.model, s.attention_tokens, s.selected_tokens_per_rank
    heads = m.num_query_heads / s.tpa
    b_kv = s.bytes_of("kv_cache")
    latent = kernels.mla_decode_bytes(rows, sel, m.kv_lora_rank, m.qk_rope_head_dim, b_kv)
    return [Op("sparse_mla", "sparse_attention", "attention", "mla", s.fmt("kv_cache"), s.fmt("attention_compute"),
               latent, latent, kernels.mla_decode_flops(rows, sel, heads, m.kv_lora_rank, m.qk_rope_head_dim),
               kernels.mla_decode_features(rows, sel, heads), 1,
               "the MLA decode table at the selected token count min(S_loc, ceil(k/KVP))")]
