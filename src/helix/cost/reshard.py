"""Re-sharding a live KV cache from one attention layout to another: the bytes moved and their time.

Placement (helix.runtime.kv_cache, rule ``round_robin``): block ``i`` (``block_tokens`` tokens) lives on KVP
rank ``i mod KVP``; inside a KVP group the cache heads are split over TPA (GQA: ceil(K/TPA) heads a rank; MLA
and TPA > K: a head is duplicated, MLA's single latent head is whole on every TPA rank). Attention rank
order is helix.layout's: ``r = kvp_rank * TPA + tpa_rank``. A re-shard from (KVP a, TPA ta) to
(KVP b, TPA tb) on the same ranks (``max(a ta, b tb)`` of them) sends every rank the (block, head) pieces
it needs under the new layout and does not already hold; nothing else moves.

Blocks. Rank r holds residue c = r // ta (mod a) before and needs c' = r // tb (mod b) after. By the
Chinese remainder theorem the blocks with i = c (mod a) and i = c' (mod b) are one residue class mod
lcm(a, b) when c = c' (mod gcd(a, b)), else none: the rank already holds 1/lcm(a, b) of all blocks, or 0.
Heads: it already holds the heads both its old and new TPA slices cover. So, as a fraction of one copy
of the cache (``moved_fraction``):

    moved = sum over new ranks r of [ needed_r - held_r ],   needed_r = 1/b * |H_new(r)| / K,
    held_r = [c = c' (mod gcd)] / lcm(a, b) * |H_old(r) & H_new(r)| / K   (0 for ranks beyond a ta).

With TPA = 1 on both sides (a ranks to b ranks) a rank r < min(a, b) keeps residue r: the fraction is
1 - min(a, b) / lcm(a, b) (2 -> 4 and 4 -> 8 move 1/2, 3 -> 2 moves 2/3, a -> a moves 0); a residue r
of [0, lcm) stays iff r mod a = r mod b, which holds exactly for r < min(a, b). It can exceed 1 when
the new layout duplicates more (MLA at a larger TPA). The count is exact for a cache of whole lcm
periods of blocks; ``reshard_bytes_exact`` counts any length block by block (per residue: ``moved_by_residue``).

Time (``reshard_s``): the busiest rank's received bytes as one all-to-all over all ranks of both
layouts (helix.cost.collectives: n is a rank's send buffer, (p-1)/p of it crosses links, so
n = received * p / (p - 1)); decoding stalls while it runs (no overlap).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from helix.cost.collectives import collective_s


def _heads(tpa_rank: int, tpa: int, cache_heads: int) -> set[int]:
    """Cache heads TPA rank ``tpa_rank`` of ``tpa`` holds: those whose share [h/K, (h+1)/K) overlaps the
    rank's [t/TPA, (t+1)/TPA) (an even split when TPA <= K, a duplicated head when TPA > K)."""
    return {h for h in range(cache_heads) if h * tpa < (tpa_rank + 1) * cache_heads and tpa_rank * cache_heads
            < (h + 1) * tpa}


@lru_cache(maxsize=4096)
def received_fractions(kvp_from: int, tpa_from: int, kvp_to: int, tpa_to: int, cache_heads: int) -> tuple:
    """Per rank, the fraction of one copy of the cache it receives in the re-shard (see the module docstring)."""
    for name, v in (("kvp_from", kvp_from), ("tpa_from", tpa_from), ("kvp_to", kvp_to), ("tpa_to", tpa_to),
                    ("cache_heads", cache_heads)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    period = kvp_from * kvp_to // gcd(kvp_from, kvp_to)
    g = gcd(kvp_from, kvp_to)
    out = []
    for r in range(kvp_to * tpa_to):
        new = _heads(r % tpa_to, tpa_to, cache_heads)
        needed = len(new) / (kvp_to * cache_heads)
        held = 0.0
        if r < kvp_from * tpa_from and (r // tpa_from) % g == (r // tpa_to) % g:
            held = len(new & _heads(r % tpa_from, tpa_from, cache_heads)) / (period * cache_heads)
        out.append(needed - held)
    return tuple(out)


def moved_fraction(kvp_from: int, tpa_from: int, kvp_to: int, tpa_to: int, cache_heads: int) -> float:
    """Bytes moved by the re-shard, as a fraction of one copy of the KV cache."""
    return float(sum(received_fractions(kvp_from, tpa_from, kvp_to, tpa_to, cache_heads)))


@lru_cache(maxsize=4096)
def moved_by_residue(kvp_from: int, tpa_from: int, kvp_to: int, tpa_to: int, cache_heads: int) -> tuple:
    """Per block residue c in [0, lcm(a, b)): the copies of a block i = c (mod lcm) the re-shard sends, as a
    fraction of the block's K heads (the new owners' TPA ranks, each lacking its heads it did not hold)."""
    received_fractions(kvp_from, tpa_from, kvp_to, tpa_to, cache_heads)  # validates
    period = kvp_from * kvp_to // gcd(kvp_from, kvp_to)
    out = []
    for c in range(period):
        lacking = 0
        for t in range(tpa_to):
            r = (c % kvp_to) * tpa_to + t  # a new owner of block c
            new = _heads(t, tpa_to, cache_heads)
            held = set()
            if r < kvp_from * tpa_from and r // tpa_from == c % kvp_from:
                held = _heads(r % tpa_from, tpa_from, cache_heads)
            lacking += len(new - held)
        out.append(lacking / cache_heads)
    return tuple(out)


def reshard_bytes_exact(tokens: int, block_tokens: int, bytes_per_token, kvp_from: int, tpa_from: int, kvp_to: int,
                        tpa_to: int, cache_heads: int):
    """Bytes moved for a cache of ``tokens`` tokens per request (a last block may be partial):
    sum over blocks of its tokens x ``moved_by_residue`` of its residue x ``bytes_per_token`` (one copy of
    every head, every layer and request). Equals ``reshard_bytes`` when the blocks fill whole lcm periods."""
    moved = np.array(moved_by_residue(kvp_from, tpa_from, kvp_to, tpa_to, cache_heads))
    starts = np.arange(0, tokens, block_tokens)
    sizes = np.minimum(block_tokens, tokens - starts)
    copies = float(np.sum(sizes * moved[(starts // block_tokens) % len(moved)]))
    return np.asarray(bytes_per_token, dtype=np.float64) * copies


def reshard_bytes(cache_bytes, kvp_from: int, tpa_from: int, kvp_to: int, tpa_to: int, cache_heads: int):
    """KV bytes moved over the links: ``cache_bytes`` (one copy of the whole cache) times ``moved_fraction``."""
    return np.asarray(cache_bytes, dtype=np.float64) * moved_fraction(kvp_from, tpa_from, kvp_to, tpa_to,
                                                                       cache_heads)


def reshard_s(cache_bytes, kvp_from: int, tpa_from: int, kvp_to: int, tpa_to: int, cache_heads: int, hw,
              extra_bytes_per_rank=0.0):
    """Seconds decoding stalls: the busiest rank's received KV (plus ``extra_bytes_per_rank``, e.g. weights a
    TPA change re-slices) as one all-to-all over ``max(a ta, b tb)`` ranks; 0 when nothing moves."""
    p = max(kvp_from * tpa_from, kvp_to * tpa_to)
    busiest = max(received_fractions(kvp_from, tpa_from, kvp_to, tpa_to, cache_heads))
    received = np.asarray(cache_bytes, dtype=np.float64) * busiest + extra_bytes_per_rank
    if p == 1:
        return np.zeros_like(received)
    t = collective_s("all_to_all", received * p / (p - 1), p, hw)
    return np.where(received > 0, t, 0.0)
