"""What each collective carries, per layer and per step: the communication formulas, written once.

The step model times these messages; the runtime's traffic test checks that the bytes it hands to
torch.distributed equal them exactly. ``n_bytes`` follows helix.cost.collectives' convention.

Per layer, per rank (B_loc = ceil(B / DP) requests per attention group, b = communication bytes):
- kvp_all_to_all (Helix, KVP > 1) over KVP: partial outputs after W_UV (MLA) plus one fp32 LSE per
  (token, head): n = B_loc * Q/TPA * (v * b + 4)  [paper §2.1.2: B x H/TPA per rank, independent of S]
- kvp_all_reduce (Medha, KVP > 1) over KVP: the same payload reduced instead of exchanged [INFERRED
  from Vajra's reduce_from_kv_parallel_region]
- o_projection_all_reduce over TPA x KVP (Helix) or TPA (others): n = B_loc * H * b  [paper §2.2]
- ffn_dp_all_gather (Helix with DP > 1) over DP: n = B * H * b, so every FFN rank sees the whole batch
- ffn_all_reduce (dense FFN) over the FFN TP group: n = B * H * b  [paper §2.2]
- moe_tp_all_reduce over TPF and moe_ep_all_gather over EP (Helix MoE): n = B * H * b and
  EP * B * H * b, then a local reduction  [paper §2.2: intra-expert AR, inter-expert AG]
- moe_tp_all_reduce over TPF x EP (TP attention with a TPF x EP MoE, TensorRT-LLM's and SGLang's
  "TP8 EP8"): every rank holds every token, computes its experts' partial sums, one all-reduce of
  n = B * H * b sums them [TensorRT-LLM's MoE with attention TP]
- moe_dispatch/combine_all_to_all (DP+EP) over EP: one row per (token, selected expert), expert-major
  like DeepEP's low-latency kernels: n = B_loc * k * H * b [S14], b the
  dispatch (or combine) payload format (DeepSeek: FP8 dispatch, BF16 combine). Exact
  for every rank's dispatch send; the combine sends back what a rank received, which depends on the
  routing, so for the combine n is the mean over the EP group (exact summed over the group). Before
  the dispatch, moe_dispatch_counts exchanges the rows per expert: n = E * 8 (int64 counts).
- dsa_topk_all_gather (DeepSeek-V3.2's DSA) over KVP: each rank's k + 1 best fp32 index scores per
  (request, query token), padded with -inf where it holds fewer; every rank then keeps its own tokens
  above the global k-th score (positions need not travel; the (k + 1)-th score detects a tie hidden
  beyond the k). One all-gather per layer, independent of S; n = the output:
  n = KVP * B_loc * q * (k + 1) * 4  [helix.runtime.dsa, exact against Hugging Face]
With MTP verification every request carries q = 1 + K query tokens, so every per-token payload is
q times larger (the KVP partials too: one output and LSE per query token and head).
Per step: embedding_all_reduce over the vocabulary-parallel group (n = B_loc * H * b; a rank holds
V/group rows and contributes zeros for the others), pp_handoff (PP - 1 point-to-point sends of
B_loc * H * b along the PP group, whose size it carries)
and lm_head_all_gather over the vocabulary-parallel group (each rank's (max logit,
index) per token: n = group * B_loc * 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helix.cost.ops import ceil_div

LSE_BYTES = 4  # the log-sum-exp statistic travels in fp32 (TensorRT-LLM Helix blog; docs/sources.md)
ARGMAX_BYTES = 8  # (fp32 max logit, int32 index) per token per vocab shard
DSA_TOPK_PHASE = "dsa_topk_all_gather"
INDEX_SCORE_BYTES = 4  # DSA's index scores travel in fp32


def topk_candidates(index_topk):
    """Scores each KVP rank sends per (request, query token): k, plus one to detect a hidden tie."""
    return index_topk + 1


def topk_exchange_bytes(batch, kvp, index_topk, query_tokens=1, score_bytes=INDEX_SCORE_BYTES):
    """Bytes of one DSA top-k all-gather (one layer), per rank, the output counted:
    KVP x B_loc x q x (k + 1) x 4 (``batch`` = B_loc, the requests of one attention group)."""
    return kvp * batch * query_tokens * topk_candidates(index_topk) * score_bytes


@dataclass(frozen=True)
class Message:
    phase: str
    kind: str  # all_reduce | all_to_all | all_gather | p2p
    group_size: object  # int or int array
    n_bytes: object  # float or float array, per call, per rank
    calls_per_step: object  # int or int array
    table: str = ""  # the fitted collective form that times it when not the kind's own (moe_dispatch, moe_combine)
    experts: object = None  # expert slots (E + redundant) of a MoE all-to-all; its measured form reads them
    group: str = ""  # the group kind it runs over (helix.placement.GROUPS; "" = a group of one)
    domains: object = None  # scale-up domains one group spans (helix.placement; None = consecutive ranks)
    per_domain: object = None  # the fewest of a group's ranks in one of those domains


def o_projection_group(strategy: str, tpa, kvp):
    return tpa * kvp if strategy == "helix" else tpa


def dense_ffn_group(strategy: str, tpf, ep):
    """GPUs sharing one dense FFN (and shared expert): all N for Helix and TP (TPF x EP = N; dense
    layers run TP = N), TPF for Medha (TP tied to attention), 1 for DP+EP (replicated: each rank runs
    its own requests' dense layers)."""
    if strategy == "dp_ep":
        return np.ones_like(np.asarray(tpf))
    return tpf if strategy == "medha" else tpf * ep


def vocab_group(strategy: str, tpa, kvp, dp, tpf, ep):
    """Vocabulary-parallel LM head width: the stage for Helix/TP, TP for Medha, 1 for DP+EP."""
    if strategy == "dp_ep":
        return np.ones_like(np.asarray(dp))
    if strategy == "medha":
        return np.asarray(tpa)
    return np.asarray(tpa * kvp * dp)


def step_messages(model, precision, strategy: str, tpa, kvp, dp, tpf, ep, pp, batch,
                  query_tokens=1) -> list[Message]:
    """Every collective of one decode step, with its size and how many times it runs.

    ``query_tokens``: tokens per request in the step (1, or 1 + K when MTP verifies K drafts)."""
    b = precision.bytes_of("communication")
    H, Q, L = model.hidden_dim, model.num_query_heads, model.num_layers
    v = model.attention_value_dim
    q = np.asarray(query_tokens, dtype=np.float64)
    B = np.asarray(batch, dtype=np.float64) * q
    B_loc = ceil_div(np.asarray(batch), dp).astype(np.float64) * q
    layers_per_stage = ceil_div(L, pp)
    traversed = pp * layers_per_stage  # a token passes every stage once (lockstep stages)
    dense_layers = traversed - (model.num_moe_layers if model.is_moe else 0)
    moe_layers = traversed - dense_layers
    msgs: list[Message] = []

    if model.is_dsa:  # KVP = 1 (every strategy but Helix and Medha): a group of one, no traffic
        msgs.append(Message(DSA_TOPK_PHASE, "all_gather", kvp, topk_exchange_bytes(B_loc, kvp, model.index_topk),
                            traversed, group="kvp"))
    partial = B_loc * (Q / tpa) * (v * b + LSE_BYTES)
    if strategy == "helix":
        msgs.append(Message("kvp_all_to_all", "all_to_all", kvp, partial, traversed, group="kvp"))
    if strategy == "medha":
        msgs.append(Message("kvp_all_reduce", "all_reduce", kvp, partial, traversed, group="kvp"))
    msgs.append(Message("o_projection_all_reduce", "all_reduce", o_projection_group(strategy, tpa, kvp),
                        B_loc * H * b, traversed, group="attention" if strategy == "helix" else "tpa"))
    if strategy == "helix":
        msgs.append(Message("ffn_dp_all_gather", "all_gather", dp, B * H * b, traversed, group="dp"))
    if strategy != "dp_ep":
        msgs.append(Message("ffn_all_reduce", "all_reduce", dense_ffn_group(strategy, tpf, ep), B * H * b,
                            dense_layers, group={"dp_ep": "", "medha": "tpf"}.get(strategy, "ffn")))
    if model.is_moe:
        if strategy == "dp_ep":
            rows = B_loc * model.experts_per_token * H
            msgs.append(Message("moe_dispatch_counts", "all_to_all", ep, model.num_experts * 8.0 + 0 * B, moe_layers,
                                group="ep"))
            # experts: the model's routed experts, as the measured tables count them (redundant slots, a
            # fraction of an octave more, are left out)
            msgs.append(Message("moe_dispatch_all_to_all", "all_to_all", ep, rows * precision.bytes_of("moe_dispatch"),
                                moe_layers, "moe_dispatch", model.num_experts, group="ep"))
            msgs.append(Message("moe_combine_all_to_all", "all_to_all", ep, rows * precision.bytes_of("moe_combine"),
                                moe_layers, "moe_combine", model.num_experts, group="ep"))
        elif strategy in ("tp", "tp_pp"):
            msgs.append(Message("moe_tp_all_reduce", "all_reduce", tpf * ep, B * H * b, moe_layers, group="ffn"))
        else:
            msgs.append(Message("moe_tp_all_reduce", "all_reduce", tpf, B * H * b, moe_layers, group="tpf"))
            msgs.append(Message("moe_ep_all_gather", "all_gather", ep, ep * B * H * b, moe_layers, group="ep"))
    vg = vocab_group(strategy, tpa, kvp, dp, tpf, ep)
    vocab = {"dp_ep": "", "medha": "tpa"}.get(strategy, "stage")
    msgs.append(Message("embedding_all_reduce", "all_reduce", vg, B_loc * H * b, 1, group=vocab))
    msgs.append(Message("pp_handoff", "p2p", np.asarray(pp), B_loc * H * b, pp - 1, group="pp"))
    msgs.append(Message("lm_head_all_gather", "all_gather", vg, vg * B_loc * ARGMAX_BYTES, 1, group=vocab))
    return msgs
