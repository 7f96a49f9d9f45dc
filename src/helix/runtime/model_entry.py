"""``ModelEntry``: one model the runtime can run (a name, its family and how to build it).

Its own module, below both ``helix.runtime.registry`` (the seeded presets) and
``helix.runtime.checkpoint`` (a local checkpoint's entry), so the registry can import checkpoint at the
top without a cycle. It imports nothing heavy: checkpoint must stay importable without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    family: str  # key of helix.runtime.registry.FAMILIES
    build: Callable[[], object]  # -> a transformers PreTrainedModel in eval mode, fp32, on CPU
    description: str
