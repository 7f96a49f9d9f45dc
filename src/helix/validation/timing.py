"""Timing that every probe shares: seconds per call, and collectives timed from the last rank's arrival.

Pure Python and numpy (no torch): the probes hand in their calls and their clocks' readings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_call_s(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2, inner: int = 1,
                sync: Callable[[], object] | None = None) -> list[float]:
    """Per-call seconds of ``fn``: ``repeats`` samples, each the mean of ``inner`` back-to-back calls;
    ``sync`` (a device's synchronize) runs before the clock is read, so queued work is counted."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if sync:
            sync()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


def last_arrival(spans_per_rank) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, wait) per call from every rank's (entry, exit) per call, ``[ranks][calls][2]``.

    Call i of every rank is the same collective (ranks issue them in the same order). It cannot finish
    on any rank before the last one enters, so its cost is max(exit) - max(entry); the time the earlier
    ranks spend waiting for the last (``wait``, the mean over ranks) is imbalance in the compute before
    it, which a step's slowest rank already carries. Clocks: the host's monotonic clock, comparable
    across the processes of one machine. Pure; tested.
    """
    counts = {len(calls) for calls in spans_per_rank}
    if len(counts) != 1:
        raise ValueError(f"ranks issued different numbers of blocking collectives: {sorted(counts)}")
    t = np.asarray(spans_per_rank, dtype=np.float64).reshape(len(spans_per_rank), -1, 2)  # [ranks, calls, 2]
    last_in = t[:, :, 0].max(axis=0)
    return t[:, :, 1].max(axis=0) - last_in, np.mean(last_in[None, :] - t[:, :, 0], axis=0)


def robust_median_s(samples_s) -> float:
    """Median of repeated timings (seconds); raises on an empty sample."""
    s = np.asarray(samples_s, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no timing samples")
    return float(np.median(s))
