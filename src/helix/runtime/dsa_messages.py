"""What DSA's distributed top-k sends under Helix KVP: plain arithmetic, no torch (the formula is the simulator's).

DeepSeek-V3.2's lightning indexer scores every cached token and keeps the top ``index_topk`` (k) per
query; under KVP the tokens are sharded, so the top-k must be made global (helix.runtime.dsa). Each
KVP rank sends the k + 1 best index scores of its shard per (request, query token), fp32, padded
with -inf when it holds fewer: one all-gather over KVP per layer (``TOPK_PHASE``, the message
helix.cost.messages.step_messages lists for a DSA model), independent of the context length. k scores
fix the global k-th score; the (k + 1)-th tells whether a rank hides more tokens tied at it, so a tie
at the k-th score is detected exactly.

Per layer and rank, in helix.cost.collectives' convention (all_gather: n = the output, group x input),
``topk_exchange_bytes`` of helix.cost.messages, which the simulator's step times:

    topk_exchange_bytes = KVP x B_loc x q x (k + 1) x 4        (q = query tokens per request: 1 in decode)

Only when tokens tied at the k-th score do not all fit (the reference breaks such ties by its own
top-k over the whole row), the rows concerned gather every rank's scores of that row once
(``TIE_PHASE``, data-dependent):

    tie_gather_bytes = KVP x rows x max_r S_loc,r x 4

Integers or numpy arrays alike (no branching on values).
"""

from __future__ import annotations

# the top-k exchange's formula is the simulator's, written once (helix.cost.messages, numpy only)
from helix.cost.messages import DSA_TOPK_PHASE, INDEX_SCORE_BYTES, topk_candidates, topk_exchange_bytes

__all__ = ["TIE_PHASE", "TOPK_PHASE", "tie_gather_bytes", "topk_candidates", "topk_exchange_bytes"]

TOPK_PHASE = DSA_TOPK_PHASE
TIE_PHASE = "dsa_topk_tie_all_gather"
SCORE_BYTES = INDEX_SCORE_BYTES  # fp32 index scores


def tie_gather_bytes(rows, kvp, s_loc_max, score_bytes=SCORE_BYTES):
    """Bytes of one tie gather (one layer), per rank: KVP x rows x max S_loc x 4."""
    return kvp * rows * s_loc_max * score_bytes
