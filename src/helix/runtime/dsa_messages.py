"""What DSA's distributed top-k sends under Helix KVP: plain arithmetic, no torch (the simulator can reuse it).

DeepSeek-V3.2's lightning indexer scores every cached token and keeps the top ``index_topk`` (k) per
query; under KVP the tokens are sharded, so the top-k must be made global (helix.runtime.dsa). Each
KVP rank sends the k + 1 best index scores of its shard per (request, query token), fp32, padded
with -inf when it holds fewer: one all-gather over KVP per layer (``TOPK_PHASE``), independent of the
context length. k scores fix the global k-th score; the (k + 1)-th tells whether a rank hides more
tokens tied at it, so a tie at the k-th score is detected exactly.

Per layer and rank, in helix.cost.collectives' convention (all_gather: n = the output, group x input):

    topk_exchange_bytes = KVP x B_loc x q x (k + 1) x 4        (q = query tokens per request: 1 in decode)

Only when tokens tied at the k-th score do not all fit (the reference breaks such ties by its own
top-k over the whole row), the rows concerned gather every rank's scores of that row once
(``TIE_PHASE``, data-dependent):

    tie_gather_bytes = KVP x rows x max_r S_loc,r x 4

Integers or numpy arrays alike (no branching on values).
"""

from __future__ import annotations

from dataclasses import dataclass

TOPK_PHASE = "dsa_topk_all_gather"
TIE_PHASE = "dsa_topk_tie_all_gather"
SCORE_BYTES = 4  # fp32 index scores


def topk_candidates(index_topk):
    """Scores each KVP rank sends per (request, query token): k, plus one to detect a hidden tie."""
    return index_topk + 1


def topk_exchange_bytes(batch, kvp, index_topk, query_tokens=1, score_bytes=SCORE_BYTES):
    """Bytes of one top-k all-gather (one layer), per rank: KVP x B_loc x q x (k + 1) x 4."""
    return kvp * batch * query_tokens * topk_candidates(index_topk) * score_bytes


def tie_gather_bytes(rows, kvp, s_loc_max, score_bytes=SCORE_BYTES):
    """Bytes of one tie gather (one layer), per rank: KVP x rows x max S_loc x 4."""
    return kvp * rows * s_loc_max * score_bytes


@dataclass(frozen=True, slots=True)
class DSAMessage:
    """One collective of a decode step, with helix.cost.messages.Message's fields."""

    phase: str
    kind: str
    group_size: object
    n_bytes: object  # per call, per rank
    calls_per_step: object


def dsa_step_messages(num_layers, batch, kvp, index_topk, dp=1, query_tokens=1) -> list[DSAMessage]:
    """The top-k exchange of one Helix decode step: one all-gather over KVP per layer (B_loc = ceil(B/DP))."""
    b_loc = -(-batch // dp)
    return [DSAMessage(TOPK_PHASE, "all_gather", kvp, topk_exchange_bytes(b_loc, kvp, index_topk, query_tokens),
                       num_layers)]
