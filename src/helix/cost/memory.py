"""Memory per GPU: weights (with QKV replication across KVP and DP) plus the KV cache (with
duplication when TPA exceeds the KV heads), against usable HBM.

Per layer, per GPU, in elements (strategy-dependent sharding):
- pre-attention weights: shared MLA down-projections whole; query-head weights / TPA; GQA K,V
  weights ceil(K/TPA) heads. Replicated across KVP and DP ranks [paper §2.1.1].
- O-projection: / (TPA x KVP) for Helix (TP = N), / TPA otherwise [paper §2.2].
- dense FFN: 3 H F / (TPF x EP) for Helix, / TPF otherwise (DP+EP replicates dense layers).
- MoE: (E + R)/EP expert slots (R redundant copies of hot experts, as DeepSeek's EPLB deploys), each
  split by TPF; shared experts sharded like the dense FFN; the router whole (router_weights format).
- embedding and LM head: vocabulary-parallel, in the embedding_weights format.
KV per GPU: ceil(B/DP) x PP requests (PP micro-batches in flight) x ceil(L/PP) layers x
ceil(S/KVP) tokens x ceil(KV heads/TPA) x elements per head x bytes [paper App. A]; DSA adds every
token's index key (FP8 + scale, helix.cost.kernels.index_key_bytes_per_token), held beside the latent
on the token's KVP rank and, like the latent, whole on every TPA rank.
"""

from __future__ import annotations

import numpy as np

from helix.cost.messages import dense_ffn_group, o_projection_group, vocab_group
from helix.cost.ops import ceil_div

REASONS = ("", "weights_exceed_hbm", "kv_exceeds_hbm", "batch_below_dp")


def qkv_weight_elements(model, tpa):
    """Pre-attention projection weights held (and read) per GPU per layer."""
    K_local = ceil_div(model.cache_heads, tpa)
    kv = K_local * model.attention_kv_head_params
    return model.attention_replicated_params + model.attention_query_head_params / tpa + kv


def o_weight_elements(model, strategy, tpa, kvp):
    return model.o_projection_params / o_projection_group(strategy, tpa, kvp)


def dense_ffn_weight_elements(model, strategy, tpf, ep):
    return model.dense_ffn_params / dense_ffn_group(strategy, tpf, ep)


def moe_weight_elements(model, strategy, tpf, ep, redundant_experts=0):
    """Routed expert slots held per GPU, shared experts and the router, per MoE layer."""
    routed = ((model.num_experts + redundant_experts) / ep) * model.expert_params / tpf
    shared = model.num_shared_experts * model.expert_params / dense_ffn_group(strategy, tpf, ep)
    return routed, shared, model.router_params


def weight_bytes_per_gpu(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, redundant_experts=0):
    """Bytes of weights on the most loaded pipeline stage's GPU."""
    b_attn = precision.bytes_of("attention_weights")
    b_ffn = precision.bytes_of("ffn_weights")
    L = model.num_layers
    stage_share = ceil_div(L, pp) / L  # the fullest stage holds ceil(L/PP) of L layers
    attn = (qkv_weight_elements(model, tpa) + o_weight_elements(model, strategy, tpa, kvp)) * b_attn
    ffn = model.num_dense_ffn_layers * dense_ffn_weight_elements(model, strategy, tpf, ep) * b_ffn
    if model.is_moe:
        routed, shared, router = moe_weight_elements(model, strategy, tpf, ep, redundant_experts)
        ffn = ffn + model.num_moe_layers * ((routed + shared) * b_ffn + router * precision.bytes_of("router_weights"))
    layers = stage_share * (L * attn + ffn)
    # Embedding and LM head, vocabulary-parallel; with PP they sit on different stages.
    vocab = (model.vocab_size * model.hidden_dim / vocab_group(strategy, tpa, kvp, dp, tpf, ep)
             * precision.bytes_of("embedding_weights"))
    return layers + np.where(np.asarray(pp) > 1, 1, 2) * vocab


def kv_bytes_per_token_per_layer_per_gpu(model, precision, tpa):
    """KV bytes one cached token costs per layer on one GPU (duplication when TPA > KV heads), DSA's
    index key included."""
    return attention_kv_bytes_per_token_per_layer_per_gpu(model, precision, tpa) + model.index_key_bytes_per_token


def attention_kv_bytes_per_token_per_layer_per_gpu(model, precision, tpa):
    """What the attention kernel reads per cached token and layer (the index key is the indexer's)."""
    return ceil_div(model.cache_heads, tpa) * model.kv_elements_per_token_per_cache_head * precision.bytes_of(
        "kv_cache")


def kv_bytes_per_gpu(model, precision, tpa, kvp, dp, pp, batch, context_tokens):
    requests = ceil_div(batch, dp) * pp
    per_layer = kv_bytes_per_token_per_layer_per_gpu(model, precision, tpa)
    return (requests.astype(np.float64) * ceil_div(model.num_layers, pp)
            * ceil_div(model.mean_attended_tokens(context_tokens), kvp)
            * per_layer)


def feasibility(weights_bytes, kv_bytes, hw, batch, dp):
    """(feasible bool array, reason code array indexing REASONS)."""
    usable = hw.usable_hbm_bytes
    code = np.where(weights_bytes > usable, 1, np.where(weights_bytes + kv_bytes > usable, 2, 0))
    code = np.where((code == 0) & (np.asarray(batch) < np.asarray(dp)), 3, code)
    return code == 0, code
