"""DeepSeek-V3.2's sparse attention (DSA): the distributed top-k's wire format under Helix KVP.

The simulator times this exchange (helix.cost.messages, which defines the format on the ground layer,
numpy only) and the runtime sends it (helix.runtime.dsa, which reads specs and layout only): both read
one definition, so the bytes one counts are the bytes the other times. Re-exported here, as
helix.specs.precision re-exports the number formats of helix.cost.formats.

Each KVP rank sends the k + 1 best index scores of its shard per (request, query token), fp32, padded
with -inf where it holds fewer (``topk_candidates``): k scores fix the global k-th score, and the
(k + 1)-th tells whether a rank hides more tokens tied at it, so a tie at the k-th score is detected
exactly. One all-gather over KVP per layer (``TOPK_PHASE``), independent of the context length.
"""

from __future__ import annotations

from helix.cost.messages import DSA_TOPK_PHASE as TOPK_PHASE
from helix.cost.messages import INDEX_SCORE_BYTES, topk_candidates

__all__ = ["INDEX_SCORE_BYTES", "TOPK_PHASE", "topk_candidates"]
