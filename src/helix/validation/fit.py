"""Fitting measured timings to the simulator's forms: pure functions, no I/O, no timing.

- ``fit_line``: t = alpha + beta * x by (relative) least squares, one collective at one group size.
- ``fit_collectives``: one joint non-negative least-squares fit of every measured collective to the
  alpha-beta forms of helix.cost.collectives, as the CPU backend (gloo, ``all_reduce_algorithms: [ring]``)
  runs them and as the simulator then prices them:
      all_reduce (ring):    ring_base + 2(p-1) ring_hop + 2(p-1)/p n / bw
      all_gather (ring):    ring_base +  (p-1) ring_hop +  (p-1)/p n / bw
      all_to_all (direct):  sync      +                   (p-1)/p n / bw
  (n follows helix.cost.collectives: AR the full buffer, AG the output, A2A the rank's send buffer).
  The design matrix is read off the simulator's own pieces (``ring_latency_s``, ``link_traffic``), so
  the form fitted is the form priced. The unknowns are (sync_latency_s, ring_base_latency_s,
  ring_hop_latency_s, 1/bw); one bandwidth serves every collective, as in the simulator.
- ``relative_errors`` and ``summarize_errors``: (predicted - measured) / measured, median |e|, worst.

Relative least squares (each row divided by its measured time) weighs a 20 us all-to-all as much
as a 20 ms one: decode messages are small, so latency must not be drowned by the largest sizes.

References: alpha-beta forms of Thakur, Rabenseifner & Gropp [S29] and nccl-tests [S10],
helix.cost.collectives.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from helix.cost import collectives

COLLECTIVE_TERMS = ("sync_latency_s", "ring_base_latency_s", "ring_hop_latency_s", "s_per_byte")
KINDS = ("all_reduce", "all_gather", "all_to_all")


@dataclass(frozen=True)
class LinearFit:
    """Coefficients of t = sum_j design[:, j] * coef[j], with the fit's relative residuals."""

    coefficients: dict[str, float]
    relative_residuals: np.ndarray  # (fitted - measured) / measured per point

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.relative_residuals)))

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.relative_residuals)))


# ---------------------------------------------------------------- least squares


def _lstsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(a, b, rcond=None)[0]


def nonnegative_lstsq(a, b) -> np.ndarray:
    """argmin ||a x - b|| subject to x >= 0, exactly, by trying every support set (few unknowns only)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = a.shape[1]
    if n > 8:
        raise ValueError(f"nonnegative_lstsq enumerates supports: at most 8 unknowns, got {n}")
    best, best_cost = np.zeros(n), float(np.sum(b * b))
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            cols = list(support)
            x_s = _lstsq(a[:, cols], b)
            if np.any(x_s < 0):
                continue
            x = np.zeros(n)
            x[cols] = x_s
            cost = float(np.sum((a @ x - b) ** 2))
            if cost < best_cost * (1 - 1e-12):
                best, best_cost = x, cost
    return best


def fit_linear(design, times_s, names, *, relative: bool = True, nonnegative: bool = True) -> LinearFit:
    """Fit times_s ~ design @ coef; ``relative`` minimises relative rather than absolute error."""
    a = np.asarray(design, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != t.shape[0] or a.shape[1] != len(names):
        raise ValueError(f"design {a.shape} does not match {t.shape[0]} times and {len(names)} names")
    if a.shape[0] < a.shape[1]:
        raise ValueError(f"need at least {a.shape[1]} points to fit {len(names)} unknowns, got {a.shape[0]}")
    if np.any(t <= 0):
        raise ValueError("times must be > 0")
    w = 1.0 / t if relative else np.ones_like(t)
    aw, tw = a * w[:, None], t * w
    coef = nonnegative_lstsq(aw, tw) if nonnegative else _lstsq(aw, tw)
    fitted = a @ coef
    return LinearFit(dict(zip(names, (float(c) for c in coef), strict=True)), (fitted - t) / t)


def fit_line(x, times_s, *, relative: bool = True) -> LinearFit:
    """t = alpha + beta * x; coefficients 'alpha' (s) and 'beta' (s per unit of x)."""
    x = np.asarray(x, dtype=np.float64)
    return fit_linear(np.column_stack([np.ones_like(x), x]), times_s, ("alpha", "beta"), relative=relative)


# ---------------------------------------------------------------- collectives


# The ring's latency is linear in (ring_base, ring_hop): unit hardware for each reads its column.
_RING_BASE = SimpleNamespace(ring_base_latency_s=1.0, ring_hop_latency_s=0.0)
_RING_HOP = SimpleNamespace(ring_base_latency_s=0.0, ring_hop_latency_s=1.0)


def collective_design(kind, n_bytes, p) -> np.ndarray:
    """Rows of the design matrix over COLLECTIVE_TERMS for arrays of (kind, n_bytes, p).

    Each kind's row is its simulator form taken apart: the all-reduce and all-gather pay the ring's
    latency (helix.cost.collectives.ring_latency_s), the all-to-all the direct form's sync, and every
    kind ``link_traffic(kind, p) x n`` bytes at the one fitted s-per-byte.
    """
    kind = np.asarray(kind)
    n = np.asarray(n_bytes, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    kind, n, p = np.broadcast_arrays(kind, n, p)
    bad = sorted(set(kind.ravel().tolist()) - set(KINDS))
    if bad:
        raise ValueError(f"unknown collective kind {bad[0]!r}; allowed: {', '.join(KINDS)}")
    rows = np.zeros(n.shape + (len(COLLECTIVE_TERMS),))
    for k in KINDS:
        sel = kind == k
        ring = k != "all_to_all"  # gloo: ring all-reduce and all-gather, direct (pairwise) all-to-all
        rows[sel, 0] = 0.0 if ring else 1.0
        rows[sel, 1] = collectives.ring_latency_s(k, p[sel], _RING_BASE) if ring else 0.0
        rows[sel, 2] = collectives.ring_latency_s(k, p[sel], _RING_HOP) if ring else 0.0
        rows[sel, 3] = collectives.link_traffic(k, p[sel]) * n[sel]
    return rows


def fit_collectives(kind, n_bytes, p, times_s) -> LinearFit:
    """Joint fit of (sync, ring base, ring hop, s/byte); coefficients keyed by COLLECTIVE_TERMS.

    A term the measurements cannot see (no all-to-all measured: sync) comes back 0; ring base and
    hop are only separable when all-reduce and all-gather (or several group sizes) were measured.
    """
    return fit_linear(collective_design(kind, n_bytes, p), times_s, COLLECTIVE_TERMS)


def predicted_collective_s(kind, n_bytes, p, coefficients: dict[str, float]) -> np.ndarray:
    """Time of collectives under fitted coefficients (the same forms the fit used)."""
    c = np.array([coefficients[k] for k in COLLECTIVE_TERMS])
    return collective_design(kind, n_bytes, p) @ c


# ---------------------------------------------------------------- errors


def relative_errors(predicted, measured) -> np.ndarray:
    """(predicted - measured) / measured, elementwise."""
    m = np.asarray(measured, dtype=np.float64)
    return (np.asarray(predicted, dtype=np.float64) - m) / m


def summarize_errors(errors) -> dict[str, float]:
    """Median and worst absolute relative error, and the signed median (bias)."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {"median_abs": float("nan"), "max_abs": float("nan"), "median": float("nan"), "points": 0}
    return {"median_abs": float(np.median(np.abs(e))), "max_abs": float(np.max(np.abs(e))),
            "median": float(np.median(e)), "points": int(e.size)}
