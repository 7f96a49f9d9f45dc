"""The search grids: batch sizes and, per strategy, every layout before the model's checks."""

from __future__ import annotations

import functools

import numpy as np

from helix.errors import HelixInputError
from helix.layout import Layout, check_layout_for_model

DENSE_BATCH_LIMIT = 128  # every integer batch up to here
POINTS_PER_OCTAVE = 16  # then a geometric grid


def batch_grid(max_batch: int) -> np.ndarray:
    """Batch sizes 1..max_batch: every integer to 128, then 16 per octave (powers of two included)."""
    max_batch = max(int(max_batch), 1)
    dense = np.arange(1, min(max_batch, DENSE_BATCH_LIMIT) + 1)
    if max_batch <= DENSE_BATCH_LIMIT:
        return dense
    octaves = np.log2(max_batch / DENSE_BATCH_LIMIT)
    steps = np.arange(1, int(np.ceil(octaves * POINTS_PER_OCTAVE)) + 1)
    geometric = np.round(DENSE_BATCH_LIMIT * 2.0 ** (steps / POINTS_PER_OCTAVE)).astype(np.int64)
    return np.unique(np.concatenate([dense, np.minimum(geometric, max_batch), [max_batch]]))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _candidates(model, strategy: str, max_gpus: int, gpu_counts=None) -> tuple[Layout, ...]:
    """Layouts of one strategy before the model's divisibility checks (only on ``gpu_counts`` GPUs, N x PP,
    where given). Kept per (model, strategy, max_gpus, gpu_counts): the experiments sweep one model under
    many hardware, precision and context variants, and building the Layouts was most of each sweep's
    enumeration (Layouts are frozen, so sharing them is safe)."""
    counts = None if gpu_counts is None else frozenset(int(c) for c in gpu_counts)
    try:
        return _kept_candidates(model, strategy, max_gpus, counts)
    except TypeError:  # a model spec that cannot be hashed: enumerate afresh
        return tuple(_generate_candidates(model, strategy, max_gpus, counts))


@functools.lru_cache(maxsize=64)
def _kept_candidates(model, strategy: str, max_gpus: int, gpu_counts) -> tuple[Layout, ...]:
    return tuple(_generate_candidates(model, strategy, max_gpus, gpu_counts))


def _generate_candidates(model, strategy: str, max_gpus: int, gpu_counts=None):
    for pp in range(1, max_gpus + 1):
        for n in range(1, max_gpus // pp + 1):
            if gpu_counts is not None and n * pp not in gpu_counts:
                continue
            eps = _divisors(n) if model.is_moe else (1,)
            if strategy == "tp" and pp == 1:
                yield from (Layout.tp(n, ep=ep) for ep in eps)
            elif strategy == "tp_pp" and pp >= 2:
                yield from (Layout.tp_pp(n, pp, ep=ep) for ep in eps)
            elif strategy == "dp_ep" and model.is_moe:
                yield from (Layout.dp_ep(n, pp, tpf=tpf) for tpf in _divisors(n))
            elif strategy == "medha":
                for tp in _divisors(n):
                    yield Layout.medha(n // tp, tp, pp)
            elif strategy == "helix":
                for tpa in _divisors(n):
                    for dp in _divisors(n // tpa):
                        for ep in _divisors(n) if model.is_moe else (1,):
                            yield Layout.helix(kvp=n // tpa // dp, tpa=tpa, dp=dp, ep=ep, pp=pp)


LAYOUT_FIELDS = ("tpa", "kvp", "dp", "tpf", "ep", "pp")
ORDER_FIELDS = ("kvp_inner", "ep_inner")  # the rank order (helix.layout); 0 where a layout dict leaves them out


def rank_orders(layout: Layout, domain_gpus: int | None) -> list[tuple[int, int]]:
    """(kvp_inner, ep_inner) pairs worth evaluating: the default order, and where the layout spans more than
    one scale-up domain, each other order that moves a collective's group (KVP x TPA of Helix; TPF x EP of
    Helix and DP+EP; TP's MoE all-reduce spans the whole stage either way)."""
    if domain_gpus is None or layout.num_gpus <= domain_gpus:
        return [(0, 0)]
    kvp = [0, 1] if layout.strategy == "helix" and layout.tpa > 1 and layout.kvp > 1 else [0]
    ep = [0, 1] if layout.strategy in ("helix", "dp_ep") and layout.tpf > 1 and layout.ep > 1 else [0]
    return [(a, b) for a in kvp for b in ep]


def enumerate_layouts(model, strategy: str, max_gpus: int, allow_uneven: bool = False,
                      redundant_experts: int = 0, gpu_counts=None, domain_gpus: int | None = None
                      ) -> dict[str, np.ndarray]:
    """Every layout of ``strategy`` on 1..max_gpus GPUs that passes ``check_layout_for_model``; with
    ``gpu_counts``, only layouts whose total GPU count (N x PP) is one of them; with ``domain_gpus``, every
    rank order of a layout beyond one domain (``rank_orders``) as its own row."""
    rows = []
    for layout in _candidates(model, strategy, max_gpus, gpu_counts):
        try:
            check_layout_for_model(layout, model, allow_uneven=allow_uneven, redundant_experts=redundant_experts)
        except HelixInputError:
            continue
        fields_ = tuple(getattr(layout, f) for f in LAYOUT_FIELDS)
        rows.extend(fields_ + order for order in rank_orders(layout, domain_gpus))
    columns = LAYOUT_FIELDS + ORDER_FIELDS
    table = np.array(rows, dtype=np.int64).reshape(-1, len(columns))
    return {f: table[:, i] for i, f in enumerate(columns)}



# Peak memory of a sweep per point: 470-530 B measured on the DeepSeek-R1 1M sweeps at 64 and 256 GPUs
# (the points plus one strategy's evaluation temporaries), doubled for headroom.
BYTES_PER_POINT = 1024


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where the machine does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_sweep_memory(points: int) -> None:
    """Refuse, before any work, a sweep the machine's free memory cannot hold (never a MemoryError)."""
    available = available_memory_bytes()
    if available is not None and points * BYTES_PER_POINT > available:
        raise HelixInputError("--max-gpus", f"a sweep of {points:,} points needs about "
                                            f"{points * BYTES_PER_POINT / 1e9:.1f} GB; this machine has "
                                            f"{available / 1e9:.1f} GB available: lower --max-gpus")
