"""``Points``: the columns of (layout, batch) sweep points that helix.search evaluates.

Its own module, below both ``helix.search`` (which builds Points) and ``helix.search_metrics`` (the
frontiers and claim metrics over them), so each imports it at the top and neither imports the other
back. ``helix.search.Points`` stays the name the search API gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from helix.layout import Layout
from helix.search_grid import LAYOUT_FIELDS, ORDER_FIELDS


@dataclass(frozen=True)
class Points:
    """Columns of (layout, batch) points; every field is an array of the same length."""

    strategy: np.ndarray
    tpa: np.ndarray
    kvp: np.ndarray
    dp: np.ndarray
    tpf: np.ndarray
    ep: np.ndarray
    pp: np.ndarray
    batch: np.ndarray
    num_gpus: np.ndarray
    ttl_s: np.ndarray
    tokens_per_s_per_user: np.ndarray
    tokens_per_s_per_gpu: np.ndarray
    memory_per_gpu_bytes: np.ndarray
    weight_bytes_per_gpu: np.ndarray
    kv_bytes_per_gpu: np.ndarray
    feasible: np.ndarray
    reason_code: np.ndarray
    kvp_inner: np.ndarray | None = None  # rank order (0: the default order)
    ep_inner: np.ndarray | None = None

    def __post_init__(self) -> None:
        for f in ORDER_FIELDS:
            if getattr(self, f) is None:
                object.__setattr__(self, f, np.zeros(len(self.batch), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def users(self) -> np.ndarray:
        """Concurrent requests: batch x PP (PP micro-batches in flight)."""
        return self.batch * self.pp

    def take(self, index) -> Points:
        return Points(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Points]) -> Points:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls) -> Points:
        return cls(**{f.name: np.zeros(0, dtype=object if f.name == "strategy" else np.float64)
                      for f in fields(cls)})

    def of(self, *strategies: str) -> Points:
        return self.take(np.isin(self.strategy, strategies))

    def layout(self, i: int) -> Layout:
        return Layout(**{f: int(getattr(self, f)[i]) for f in LAYOUT_FIELDS}, strategy=str(self.strategy[i]),
                      **{f: bool(getattr(self, f)[i]) for f in ORDER_FIELDS})

    def describe(self, i: int) -> str:
        return f"{self.layout(i).describe()} B={int(self.batch[i])}"
