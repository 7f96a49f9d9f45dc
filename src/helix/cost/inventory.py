"""The decode step's op inventory: every op a serving stack launches per layer and per step.

An ``Op`` is one kernel (or one fused kernel) with a name, the breakdown term it belongs to, a kind
(gemm, grouped_gemm, attention, elementwise), the fitted table that times it, HBM bytes moved,
FLOPs, the shape features the table's correction reads, and the layers it runs on. Collectives are
``helix.cost.messages`` (the one place communication volumes are written).

``Shape`` holds the layout and batch arrays every term function reads (both types, with the generic
GEMM and elementwise builders, are in ``helix.cost.op_types``, below the term functions that build
Ops and this module that composes them); ``layer_ops`` lists the ops of
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

import numpy as np

from helix.cost import dsa_terms, terms
from helix.cost.op_types import Op, Shape
from helix.cost.ops import ceil_div

LAYER_GROUPS = ("attention", "dense_ffn", "moe_ffn", "step")


def layer_ops(shape: Shape) -> dict[str, list[Op]]:
    """The inventory: ops per layer group (attention half-layer, dense FFN, MoE FFN, per step)."""
    model = shape.model
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
        by_term = out.setdefault(group, {})
        for op in ops:
            by_term[op.term] = by_term.get(op.term, 0) + int(np.where(op.active, op.fallback_launches, 0))
    return out
