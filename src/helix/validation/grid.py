"""The points ``helix validate`` times: layouts with a core per rank, batches and contexts. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridPoint:
    kvp: int
    tpa: int
    hopb: bool
    batch: int
    context: int

    @property
    def ranks(self) -> int:
        return self.kvp * self.tpa

    @property
    def label(self) -> str:
        if self.kvp == 1 and self.tpa == 1:
            return "single rank"
        if self.kvp == 1:
            return f"TP={self.tpa} (KVP=1)"
        return f"Helix KVP={self.kvp} TPA={self.tpa}" + (" HOP-B" if self.hopb else "")


@dataclass(frozen=True)
class Grid:
    model: str
    points: tuple[GridPoint, ...]
    warmup: int = 2
    repeats: int = 5
    prompt_tokens: int = 16
    timeout_s: float = 120.0


# (KVP, TPA, HOP-B) timed when the machine has a core for each rank; bench-llama has 4 KV heads, so TPA <= 4.
LAYOUTS_BY_RANKS = {
    1: ((1, 1, False),),
    2: ((2, 1, False), (2, 1, True), (1, 2, False)),
    4: ((4, 1, False), (4, 1, True), (2, 2, False), (1, 4, False)),
    8: ((8, 1, False), (4, 2, False)),
}


def default_grid(cores: int) -> Grid:
    """Timed points use one rank per core (more ranks than cores would time contention, not the
    model): every layout of LAYOUTS_BY_RANKS with N <= cores, B in {1, 4, 8}, S in {4K, 16K, 64K};
    HOP-B with one chunk per request, so B > 1 only. On a 2-core machine: 33 points."""
    layouts = [lay for n, lays in sorted(LAYOUTS_BY_RANKS.items()) if n <= max(cores, 1) for lay in lays]
    points = [GridPoint(kvp, tpa, hopb, b, s) for b in (1, 4, 8) for s in (4096, 16384, 65536)
              for kvp, tpa, hopb in layouts if not (hopb and b == 1)]
    return Grid("bench-llama", tuple(points), warmup=2, repeats=25)


def tiny_grid() -> Grid:
    """Seconds: tiny-llama, KVP = 2 with and without HOP-B, two contexts (tests, smoke runs)."""
    pts = tuple(GridPoint(2, 1, h, 2, s) for s in (256, 1024) for h in (False, True))
    return Grid("tiny-llama", pts, warmup=1, repeats=3, prompt_tokens=8, timeout_s=60.0)
