"""The types of the op inventory and the two generic op builders, below every term function.

``Op`` is one kernel (or one fused kernel); ``Shape`` holds the layout and batch arrays every term
reads (both described in ``helix.cost.inventory``). ``gemm_op`` and ``elementwise_op`` build the two
commonest ops. They live here, not in ``helix.cost.inventory`` or ``helix.cost.terms``, so that
``terms`` and ``dsa_terms`` (the DSA ops) can both build Ops and ``inventory`` can compose both, with
every import one-way: op_types <- dsa_terms <- terms <- inventory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helix.cost import kernels
from helix.cost.ops import ceil_div

KINDS = ("gemm", "grouped_gemm", "attention", "elementwise")


@dataclass(frozen=True)
class Op:
    name: str
    term: str  # breakdown term (helix.step)
    kind: str  # one of KINDS
    table: str  # the fitted form's family: gemm, attention, mla, mla_bmm_pre, mla_bmm_post, moe, elementwise
    fmt: str  # the precision format that picks the table's dtype (and the tensor-core rate)
    compute_fmt: str  # the format whose tensor-core peak bounds the FLOPs
    bytes: object  # HBM bytes moved per call (float or array)
    read_bytes: object  # App. A accounting: weights + KV read per call
    flops: object
    features: dict = field(default_factory=dict)
    fallback_launches: int = 0
    note: str = ""
    active: object = True  # False (or a bool array) where the op does not run (the combine at KVP = 1)


@dataclass(frozen=True)
class Shape:
    """Layout, batch and context as arrays, with the per-rank sizes every term reads."""

    model: object
    precision: object
    strategy: str
    tpa: np.ndarray
    kvp: np.ndarray
    dp: np.ndarray
    tpf: np.ndarray
    ep: np.ndarray
    pp: np.ndarray
    batch: np.ndarray  # requests per stage (B)
    context_tokens: np.ndarray  # S
    query_tokens: int = 1  # tokens per request this step: 1, or 1 + K with MTP verification
    redundant_experts: int = 0
    expert_imbalance: float = 1.0
    # the routing the MoE kernel tables are read at: power_law (live traffic), balanced (EPLB, a synthetic
    # benchmark); auto = balanced where there are redundant experts (EPLB), power_law otherwise
    expert_routing: str = "auto"
    fused_combine: bool = False  # the KVP combine done inside another kernel (no launch of its own)

    @property
    def requests_per_rank(self):
        """B_loc = ceil(B / DP): requests one attention group serves."""
        return ceil_div(self.batch, self.dp).astype(np.float64)

    @property
    def attention_tokens(self):
        """Tokens through one rank's attention-side ops: B_loc x q."""
        return self.requests_per_rank * self.query_tokens

    @property
    def ffn_tokens(self):
        """Tokens through one rank's dense FFN, router and shared expert: every token of the stage,
        except DP+EP, where each rank keeps its own requests."""
        if self.strategy == "dp_ep":
            return self.attention_tokens
        return np.asarray(self.batch, dtype=np.float64) * self.query_tokens

    @property
    def kv_tokens_per_rank(self):
        """S_loc = ceil(S / KVP); S is the layers' mean attended context (sliding-window layers: ModelSpec)."""
        return ceil_div(self.model.mean_attended_tokens(self.context_tokens), self.kvp).astype(np.float64)

    @property
    def selected_tokens_per_rank(self):
        """Cached tokens one rank's attention reads per (request, query token): S_loc, or under DSA
        min(S_loc, ceil(k / KVP)).

        DSA keeps the k = index_topk best-scored tokens of the whole context (all of them when S <= k);
        under KVP each rank attends to those it holds. Helix stripes the cache over the KVP ranks in
        16-token blocks, round robin (the paper's staged KV concatenation; helix.runtime.kv_cache's
        round_robin rule), so any run of selected tokens longer than KVP x 16 lands evenly, and scattered
        selections spread binomially around k/KVP: the expected share is k/KVP, and summed over a rank's
        B_loc requests the hottest rank stays within a few sd = sqrt(B_loc k / KVP) of B_loc k / KVP (at
        B_loc = 16, k = 2048, KVP = 64: sd 4.4 %). A placement that keeps the recent window on one rank
        (contiguous shards) can put up to min(S_loc, k) on it: that bound is not modelled."""
        if not self.model.is_dsa:
            return self.kv_tokens_per_rank
        share = ceil_div(self.model.index_topk, self.kvp).astype(np.float64)
        return np.minimum(self.kv_tokens_per_rank, share)

    def bytes_of(self, tensor_class: str) -> float:
        return self.precision.bytes_of(tensor_class)

    def fmt(self, tensor_class: str) -> str:
        return getattr(self.precision, tensor_class)


A = kernels.ACTIVATION_BYTES


def gemm_op(s: Shape, name: str, term: str, m, n, k, weight_class: str, launches: int = 1, note: str = "") -> Op:
    """y[m, n] = x[m, k] W: weights in ``weight_class``'s format, tensor cores at the GEMM compute format."""
    b = s.bytes_of(weight_class)
    return Op(name, term, "gemm", "gemm", s.fmt(weight_class), s.fmt("compute"), kernels.gemm_bytes(m, n, k, b),
              np.asarray(n, dtype=np.float64) * k * b, kernels.gemm_flops(m, n, k), kernels.gemm_features(m, n, k),
              launches, note)


def elementwise_op(s: Shape, name: str, term: str, rows, width, read_b: float, write_b: float,
                   launches: int = 0, read_bytes=0.0, note: str = "") -> Op:
    return Op(name, term, "elementwise", "elementwise", "bf16", "bf16",
              kernels.elementwise_bytes(rows, width, read_b, write_b), read_bytes, 0.0,
              kernels.elementwise_features(rows, width), launches, note)
