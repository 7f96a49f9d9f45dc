"""Overlap policies: how communication hides behind computation.

- serial: compute then communicate, everything exposed (Medha [paper §3.2]; HOP-B off).
- two-stage batch pipeline (HOP-B [paper §2.1.3, Fig. 3]): B items, per-item compute t_a and
  per-item communication t_c; item i's communication overlaps item i+1's compute:
      T = t_a + t_c + (B - 1) * max(t_a, t_c)
  Fig. 3: 8 requests, t_a = 2, t_c = 1.2 -> 25.6 serial, 17.2 pipelined (the paper draws ~17).
- imperfect overlap: ``hw.comm_overlap_efficiency`` eta in [0, 1] is the fraction of the shorter of
  (compute, communication) that hides when both are issued at once (measured by ``helix calibrate``):
      T = t_a + t_c + (B - 1) * (max(t_a, t_c) + (1 - eta) * min(t_a, t_c))
  eta = 1 is the paper's formula above exactly [ASSUMPTION on GPUs: copy engines / SM-free NVLink
  transfers]; eta = 0 runs each item's compute and communication back to back (B (t_a + t_c)).
- In the step model the batch may be split into c chunks of ceil(B/c) items (c = 1 is serial; a
  chunk count above B leaves B chunks of one); each chunk's collective pays its own latency, so
  the best c is chosen per configuration (or a fixed c given, as a runtime with a fixed chunk count
  runs). Every candidate grows with B, so TTL never falls as B grows.
"""

from __future__ import annotations

import numpy as np


def serial_s(compute_s, comm_s):
    return np.asarray(compute_s) + np.asarray(comm_s)


def pipelined_s(item_compute_s, item_comm_s, items, overlap_efficiency: float = 1.0):
    """Two-stage pipeline over ``items`` equal items (the HOP-B formula), a fraction
    ``overlap_efficiency`` (a scalar in [0, 1]) of the shorter stage hidden behind the longer."""
    a = np.asarray(item_compute_s, dtype=np.float64)
    c = np.asarray(item_comm_s, dtype=np.float64)
    per_item = np.maximum(a, c)
    if overlap_efficiency != 1.0:  # eta = 1: the paper's formula, bit for bit and without the extra pass
        per_item = per_item + (1.0 - overlap_efficiency) * np.minimum(a, c)
    return a + c + (np.asarray(items) - 1) * per_item


# Chunk counts tried when splitting a batch (powers of two).
CHUNK_COUNTS = tuple(2**i for i in range(11))


def best_chunked_s(chunk_times, batch, overlap_efficiency: float = 1.0):
    """min over chunk counts c of pipelined_s(compute, comm, min(c, batch), overlap_efficiency).

    ``chunk_times(c)`` returns (per-chunk compute s, per-chunk comm s) for chunks of ceil(batch/c).
    """
    batch = np.asarray(batch)
    best = None
    for c in CHUNK_COUNTS:
        a, m = chunk_times(c)
        total = pipelined_s(a, m, np.minimum(c, batch), overlap_efficiency)
        best = total if best is None else np.minimum(best, total)
    return best


def chunked_s(chunk_times, batch, chunks: int, overlap_efficiency: float = 1.0):
    """pipelined_s(compute, comm, min(chunks, batch), overlap_efficiency) for one fixed chunk count
    (see best_chunked_s)."""
    a, m = chunk_times(chunks)
    return pipelined_s(a, m, np.minimum(chunks, np.asarray(batch)), overlap_efficiency)
