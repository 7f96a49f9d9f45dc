"""Helix Parallelism: simulator, search, experiments and runtime for long-context LLM decoding.

The public Python API, in a few lines::

    import helix
    model = helix.load_model("deepseek-r1")
    hw = helix.load_hardware("gb200-nvl72")
    layout = helix.Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    r = helix.simulate(model, hw, layout, batch_size=16, context_tokens=helix.parse_tokens("1M"))
    print(r.ttl_s, r.tokens_per_s_per_user, r.breakdown)

The names are loaded on first use (PEP 562), so ``import helix`` itself imports nothing heavy: the
``helix`` program (``helix.cli``) starts in a few milliseconds and has its Ctrl-C handling in place
before numpy, YAML or the presets are imported (an interrupt then is one line, never a traceback).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from helix.errors import HelixInputError
    from helix.layout import Layout
    from helix.specs import HardwareSpec, ModelSpec, PrecisionSpec, load_hardware, load_model, parse_tokens
    from helix.step import StepResult, simulate

_HOME = {
    "HelixInputError": "helix.errors",
    "Layout": "helix.layout",
    "HardwareSpec": "helix.specs",
    "ModelSpec": "helix.specs",
    "PrecisionSpec": "helix.specs",
    "load_hardware": "helix.specs",
    "load_model": "helix.specs",
    "parse_tokens": "helix.specs",
    "StepResult": "helix.step",
    "simulate": "helix.step",
}

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


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'helix' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
