"""The launches helix.step charges, read from the op inventory (helix.cost.inventory.fallback_launches).

``helix calibrate`` divides its runtime probe's time per layer by them (the fixed cost of one modelled
op) and ``helix validate`` sets them beside the aten ops the runtime issues per phase; both read them
here, so the count lives in the inventory alone.
"""

from __future__ import annotations

import numpy as np

from helix.cost.inventory import fallback_launches
from helix.cost.op_types import Shape
from helix.specs.model import ModelSpec
from helix.specs.precision import PrecisionSpec

FP32 = PrecisionSpec.uniform("fp32")  # the runtime computes in fp32

# The runtime probe's minimal Llama (helix.validation.runtime_probe: H = 64, Q = 8, K = 4, Hsz = 8,
# F = 64, V = 64): a dense GQA model, which is all the launch count depends on.
PROBE_MODEL = ModelSpec(name="probe-llama", num_layers=1, hidden_dim=64, num_query_heads=8, num_kv_heads=4,
                        head_dim=8, ffn_dim=64, vocab_size=64)


def launches_by_term(model: ModelSpec, kvp: int, tpa: int = 1) -> dict[str, dict[str, int]]:
    """Per layer group (attention, dense_ffn, moe_ffn, step), per term: launches of Helix KVP x TPA."""
    ranks = kvp * tpa
    shape = Shape(model, FP32, "helix", *(np.asarray(x) for x in (tpa, kvp, 1, ranks, 1, 1, 1, 1)))
    return fallback_launches(shape)


def per_dense_layer(model: ModelSpec, kvp: int) -> int:
    """Launches of one dense layer (attention half and FFN): 5 for a GQA Llama, 6 at KVP > 1 (the combine)."""
    groups = launches_by_term(model, kvp)
    return sum(groups["attention"].values()) + sum(groups["dense_ffn"].values())


def per_step(model: ModelSpec, kvp: int) -> int:
    """Launches once per step (embedding and LM head)."""
    return sum(launches_by_term(model, kvp)["step"].values())
