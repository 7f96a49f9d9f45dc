"""The decode step's op inventory: every op a serving stack launches per layer and per step.

An ``Op`` is one kernel (or one fused kernel) with a name, the breakdown term it belongs to, a kind
(gemm, grouped_gemm, attention, elementwise), the fitted table that times it, HBM bytes moved,
FLOPs, the shape features the table's correction reads, and the layers it runs on. Collectives are
``helix.cost.messages`` (the one place communication volumes are written).

``Shape`` holds the layout and batch arrays every term function reads; ``layer_ops`` lists the ops of
one attention half-layer, one dense FFN, one MoE FFN and the per-step ops, built by the named term
functions of ``helix.cost.terms``. docs/architecture.md shows the inventory as a table and
tests/test_inventory.py pins a hand count for one Llama and one DeepSeek layer.

Two byte counts per op: ``bytes`` is the kernel's HBM traffic (weights, KV and activations), which the
fitted forms were fitted against (helix.cost.kernels); ``read_bytes`` is the paper's App. A
accounting (weights and KV only), which the plain roofline of presets without an op model uses, so
the ``ideal`` preset reproduces App. A exactly. ``fallback_launches`` is the launch count of the
roofline model (one per modelled op, two for an FFN; elementwise ops have none there), kept so a
profile calibrated with that count (``helix calibrate`` on CPU) keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helix.cost.ops import ceil_div

KINDS = ("gemm", "grouped_gemm", "attention", "elementwise")
LAYER_GROUPS = ("attention", "dense_ffn", "moe_ffn", "step")


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


def layer_ops(shape: Shape) -> dict[str, list[Op]]:
    """The inventory: ops per layer group (attention half-layer, dense FFN, MoE FFN, per step)."""
    from helix.cost import terms  # the term functions build Ops; they import this module's types

    model = shape.model
    from helix.cost import dsa_terms

    attention = (terms.norm_ops(shape, "input_norm") + terms.qkv_projection_ops(shape)
                 + terms.rope_kv_write_ops(shape) + dsa_terms.indexer_ops(shape) + dsa_terms.index_topk_ops(shape)
                 + terms.attention_ops(shape) + terms.combine_ops(shape)
                 + terms.o_projection_ops(shape) + terms.norm_ops(shape, "post_attention_norm"))
    groups = {"attention": attention, "dense_ffn": terms.dense_ffn_ops(shape), "moe_ffn": [],
              "step": terms.embedding_lm_head_ops(shape) + terms.sampling_ops(shape)}
    if model.is_moe:
        groups["moe_ffn"] = terms.moe_router_ops(shape) + terms.moe_expert_ops(shape) + terms.moe_shared_expert_ops(
            shape)
    return groups


def layer_counts(model, pp) -> dict[str, np.ndarray]:
    """How many times each group runs per step: a token crosses PP x ceil(L/PP) layer slots (lockstep
    stages); the model's leading dense layers are dense FFNs, the rest MoE."""
    traversed = np.asarray(pp) * ceil_div(model.num_layers, pp)
    moe = model.num_moe_layers if model.is_moe else 0
    return {"attention": traversed, "dense_ffn": traversed - moe, "moe_ffn": traversed * 0 + moe,
            "step": traversed * 0 + 1}


def fallback_launches(shape: Shape) -> dict[str, dict[str, int]]:
    """Per layer group, per breakdown term: the launches the roofline model charges for one configuration
    (a scalar ``shape``): the sum of the running ops' ``fallback_launches``. The one count of launches
    that ``helix calibrate`` divides its runtime probe by and ``helix validate`` sets beside the aten ops
    it counts, so neither restates it."""
    out: dict[str, dict[str, int]] = {}
    for group, ops in layer_ops(shape).items():
        terms = out.setdefault(group, {})
        for op in ops:
            terms[op.term] = terms.get(op.term, 0) + int(np.where(op.active, op.fallback_launches, 0))
    return out
