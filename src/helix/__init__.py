"""Helix Parallelism: simulator, search, experiments and runtime for long-context LLM decoding.

The public Python API, in a few lines::

    import helix
    model = helix.load_model("deepseek-r1")
    hw = helix.load_hardware("gb200-nvl72")
    layout = helix.Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    r = helix.simulate(model, hw, layout, batch_size=16, context_tokens=helix.parse_tokens("1M"))
    print(r.ttl_s, r.tokens_per_s_per_user, r.breakdown)
"""

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.specs import (
    HardwareSpec,
    ModelSpec,
    PrecisionSpec,
    load_hardware,
    load_model,
    parse_tokens,
)
from helix.step import StepResult, simulate

__all__ = [
    "HardwareSpec",
    "HelixInputError",
    "Layout",
    "ModelSpec",
    "PrecisionSpec",
    "StepResult",
    "load_hardware",
    "load_model",
    "parse_tokens",
    "simulate",
]
