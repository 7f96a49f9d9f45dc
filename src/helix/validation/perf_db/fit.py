"""Generic numpy fitting of the op-time forms of helix.cost.optime to measured rows.

Two stages, both on log time (a table spans six decades of time; a relative error is what matters):

1. the base, by a damped Gauss-Newton (Levenberg-Marquardt) on log residuals over the log of its
   positive parameters: ``fixed_s, hbm_efficiency, flop_efficiency`` of an OpForm, or
   ``latency_s, latency_per_doubling_s, bus_bytes_per_s`` of a CollectiveForm;
2. the correction: linear least squares of ``log(t / t_base)`` on the multilinear interpolant's
   sparse design matrix (scipy.sparse, which the perf-db extra brings; each row has 2^d nonzeros, the
   corner weights of its grid cell), with a
   second-difference penalty along every axis (smooth in log-log space, extends linearly into
   grid cells no row reaches) and a tiny ridge (pins nodes no row and no neighbour determine).

The held-out split is a hash of each row's shape, so it is the same whatever the file order.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from helix.cost.optime import Correction, collective_traffic

HOLDOUT_MODULUS = 5  # one row in five is held out
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) & _MASK64


def holdout_mask(*key_columns) -> np.ndarray:
    """True for the held-out rows: a hash of the row's shape (integer columns) is 0 modulo 5."""
    h = np.full(np.shape(key_columns[0]), 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in key_columns:
            h = _mix64(h ^ np.asarray(col, dtype=np.int64).astype(np.uint64))
    return (h % np.uint64(HOLDOUT_MODULUS)) == 0


def error_stats(predicted, measured) -> tuple[float, float]:
    """Median and 90th percentile of |pred / meas - 1|."""
    err = np.abs(np.asarray(predicted, dtype=np.float64) / np.asarray(measured, dtype=np.float64) - 1.0)
    if err.size == 0:
        return float("nan"), float("nan")
    return float(np.median(err)), float(np.quantile(err, 0.9))


def round_sig(x: float, digits: int = 5) -> float:
    return float(f"{float(x):.{digits - 1}e}")


# ---------------------------------------------------------------- Levenberg-Marquardt

def levenberg_marquardt(residual, theta0, iterations: int = 200, lower=None, upper=None) -> np.ndarray:
    """Minimise ||residual(theta)||^2 from theta0 (forward-difference Jacobian, box clamp)."""
    theta = np.asarray(theta0, dtype=np.float64).copy()
    lo = np.full(theta.shape, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    hi = np.full(theta.shape, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    r = residual(theta)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(iterations):
        improved = converged = False
        jac = np.empty((r.size, theta.size))
        for j in range(theta.size):
            step = 1e-7 * max(1.0, abs(theta[j]))
            shifted = theta.copy()
            shifted[j] += step
            jac[:, j] = (residual(shifted) - r) / step
        jtj, jtr = jac.T @ jac, jac.T @ r
        while damping < 1e12:
            delta = np.linalg.solve(jtj + damping * np.diag(np.diag(jtj) + 1e-12), -jtr)
            trial = np.clip(theta + delta, lo, hi)
            r_trial = residual(trial)
            cost_trial = float(r_trial @ r_trial)
            if cost_trial < cost:
                improved = True
                converged = cost - cost_trial <= 1e-15 * max(cost, 1e-300) or np.max(np.abs(trial - theta)) < 1e-13
                theta, r, cost = trial, r_trial, cost_trial
                damping = max(damping / 10.0, 1e-12)
                break
            damping *= 10.0
        if not improved or converged or cost < 1e-28:
            break
    return theta


HUBER_DELTA = 0.1  # log residuals beyond 10 % count linearly, not quadratically (Huber)
ROBUST_PASSES = 4


def huber_weights(r) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= HUBER_DELTA, 1.0, HUBER_DELTA / np.maximum(a, 1e-300))


def robust_lm(residual, theta0, lower, upper) -> np.ndarray:
    """Levenberg-Marquardt under Huber weights, re-weighted a few times (IRLS)."""
    theta = levenberg_marquardt(residual, theta0, lower=lower, upper=upper)
    for _ in range(ROBUST_PASSES - 1):
        sw = np.sqrt(huber_weights(residual(theta)))
        theta = levenberg_marquardt(lambda th, sw=sw: sw * residual(th), theta, lower=lower, upper=upper)
    return theta


def fit_op_base(bytes_moved, flops, seconds, hbm_bytes_per_s: float, peak_flops_per_s: float):
    """(fixed_s, hbm_efficiency, flop_efficiency) minimising the log error of the roofline base.

    A table without FLOPs (elementwise) keeps flop_efficiency = 1 (it never binds)."""
    b = np.asarray(bytes_moved, dtype=np.float64)
    f = np.asarray(flops, dtype=np.float64)
    log_t = np.log(np.asarray(seconds, dtype=np.float64))
    has_flops = bool(np.any(f > 0))
    t = np.exp(log_t)
    eta_m0 = float(np.clip(np.quantile(b / hbm_bytes_per_s / t, 0.9), 1e-3, 10.0))
    eta_f0 = float(np.clip(np.quantile(f / peak_flops_per_s / t, 0.9), 1e-3, 10.0)) if has_flops else 1.0

    def base(theta):
        fixed, eta_m = np.exp(theta[0]), np.exp(theta[1])
        eta_f = np.exp(theta[2]) if has_flops else 1.0
        return fixed + np.maximum(b / (eta_m * hbm_bytes_per_s), f / (eta_f * peak_flops_per_s))

    theta0 = [np.log(0.5 * t.min()), np.log(eta_m0)] + ([np.log(eta_f0)] if has_flops else [])
    bounds = ([np.log(1e-9), np.log(1e-4)] + [np.log(1e-4)] * has_flops,
              [np.log(1.0), np.log(1e3)] + [np.log(1e3)] * has_flops)
    theta = robust_lm(lambda th: np.log(base(th)) - log_t, theta0, bounds[0], bounds[1])
    return float(np.exp(theta[0])), float(np.exp(theta[1])), float(np.exp(theta[2])) if has_flops else 1.0


def fit_collective_base(kind: str, n_bytes, group, seconds):
    """(latency_s, latency_per_doubling_s, bus_bytes_per_s) minimising the log error of alpha(p) + beta.

    latency_per_doubling_s is 0 where one group size is measured (it is not identifiable there)."""
    n = np.asarray(n_bytes, dtype=np.float64)
    p = np.asarray(group, dtype=np.float64)
    log_t = np.log(np.asarray(seconds, dtype=np.float64))
    traffic = collective_traffic(kind, p) * n
    several = np.unique(p).size > 1
    t = np.exp(log_t)
    bw0 = float(np.quantile(traffic / t, 0.9))
    lat0 = float(0.8 * t.min())

    def base(theta):
        per_doubling = np.exp(theta[2]) * np.log2(p) if several else 0.0
        return np.exp(theta[0]) + per_doubling + traffic / np.exp(theta[1])

    theta0 = [np.log(lat0), np.log(bw0)] + ([np.log(0.1 * lat0)] if several else [])
    lower = [np.log(1e-9), np.log(1e6)] + [np.log(1e-12)] * several
    upper = [np.log(1.0), np.log(1e15)] + [np.log(1.0)] * several
    theta = robust_lm(lambda th: np.log(base(th)) - log_t, theta0, lower, upper)
    return float(np.exp(theta[0])), float(np.exp(theta[2])) if several else 0.0, float(np.exp(theta[1]))


# ---------------------------------------------------------------- correction

EACH_VALUE = "each"  # a knot at every value the table holds (an axis of discrete model shapes)


def choose_knots(log2_values, spacing) -> tuple[float, ...] | None:
    """Knots over the axis' log2 range: evenly spaced, about one per ``spacing`` octaves (at least 2),
    for a tuple ``spacing`` at those feature values (log2, kept inside the range, with both ends), or
    for EACH_VALUE at every value the axis holds. None where the axis holds one value."""
    lo, hi = float(np.min(log2_values)), float(np.max(log2_values))
    if hi - lo < 1e-9:
        return None
    if spacing == EACH_VALUE:
        return tuple(float(v) for v in np.unique(np.round(np.asarray(log2_values, dtype=np.float64), 4)))
    if isinstance(spacing, tuple):
        inner = [float(np.log2(v)) for v in spacing if lo + 1e-6 < np.log2(v) < hi - 1e-6]
        return tuple(round(v, 4) for v in [lo, *inner, hi])
    count = max(2, int(np.ceil((hi - lo) / spacing - 1e-9)) + 1)
    return tuple(round(float(v), 4) for v in np.linspace(lo, hi, count))


def design_matrix(log2_features, knots):
    """Sparse multilinear design matrix (rows x grid nodes, C order, CSR), the same weights as
    Correction.log_ratio (clamped at the edges)."""
    rows = np.asarray(log2_features[0]).shape[0]
    shape = tuple(len(k) for k in knots)
    cells = []
    for x, kn in zip(log2_features, knots, strict=True):
        kn = np.asarray(kn, dtype=np.float64)
        x = np.clip(np.asarray(x, dtype=np.float64), kn[0], kn[-1])
        i = np.clip(np.searchsorted(kn, x, side="right") - 1, 0, len(kn) - 2)
        cells.append((i, (x - kn[i]) / (kn[i + 1] - kn[i])))
    row_index, col_index, weights = [], [], []
    for corner in range(2 ** len(knots)):
        flat = np.zeros(rows, dtype=np.int64)
        w = np.ones(rows)
        for axis, (i, w1) in enumerate(cells):
            bit = (corner >> axis) & 1
            flat = flat * shape[axis] + i + bit
            w = w * (w1 if bit else 1.0 - w1)
        row_index.append(np.arange(rows))
        col_index.append(flat)
        weights.append(w)
    return sparse.csr_matrix((np.concatenate(weights), (np.concatenate(row_index), np.concatenate(col_index))),
                             shape=(rows, int(np.prod(shape))))


def difference_penalty(shape: tuple[int, ...], order: int):
    """Stacked ``order``-th difference operators along every axis of a C-order grid (sparse)."""
    size = int(np.prod(shape))
    stencil = {1: (-1.0, 1.0), 2: (1.0, -2.0, 1.0)}[order]
    blocks = []
    for axis, count in enumerate(shape):
        if count <= order:
            continue
        d = sparse.diags([np.full(count - order, c) for c in stencil], list(range(order + 1)),
                         shape=(count - order, count))
        block = None
        for a, c in enumerate(shape):
            op = d if a == axis else sparse.identity(c)
            block = op if block is None else sparse.kron(block, op)
        blocks.append(block)
    return sparse.vstack(blocks).tocsr() if blocks else sparse.csr_matrix((0, size))


DIRECT_SOLVE_NODES = 2000  # above this many grid nodes, conjugate gradients (a direct factorisation fills in)


def _solve(normal, rhs, start):
    """The penalised normal equations: sparse LU for small grids, Jacobi-preconditioned CG for large."""
    if normal.shape[0] <= DIRECT_SOLVE_NODES:
        return np.asarray(sparse_linalg.spsolve(normal.tocsc(), rhs)).ravel()
    inverse_diagonal = sparse.diags(1.0 / normal.diagonal())
    x, info = sparse_linalg.cg(normal, rhs, x0=start, rtol=1e-10, maxiter=20_000, M=inverse_diagonal)
    if info != 0:
        raise RuntimeError(f"correction fit: conjugate gradients did not converge ({info})")
    return x


def fit_correction(axes, knots, log2_features, log_ratio, smoothness: float, tension: float = 0.0,
                   ridge: float = 1e-4):
    """Correction minimising the Huber loss of A c - r plus (N / M) (s ||D2 c||^2 + t ||D1 c||^2 + ridge ||c||^2)
    (N rows, M nodes); coefficients rounded to 4 decimals. ``axes``/``knots``/``log2_features``: the kept axes."""
    a = design_matrix(log2_features, knots)
    r = np.asarray(log_ratio, dtype=np.float64)
    shape = tuple(len(k) for k in knots)
    d2, d1 = difference_penalty(shape, 2), difference_penalty(shape, 1)
    scale = r.size / a.shape[1]
    penalty = scale * (smoothness * (d2.T @ d2) + tension * (d1.T @ d1) + ridge * sparse.identity(a.shape[1]))
    w = np.ones(r.size)
    coefficients = np.zeros(a.shape[1])
    for _ in range(ROBUST_PASSES):
        aw = sparse.diags(w) @ a
        coefficients = _solve((a.T @ aw + penalty).tocsr(), aw.T @ r, coefficients)
        w = huber_weights(a @ coefficients - r)
    rounded = tuple(round(float(c), 4) + 0.0 for c in coefficients)
    return Correction(axes=tuple(axes), knots=tuple(tuple(k) for k in knots), coefficients=rounded)
