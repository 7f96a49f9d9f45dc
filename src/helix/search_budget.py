"""Budgets and answers for planning: which GPU counts, which SLA, and the answer at that budget.

* GPU counts: ``--total-gpus N`` (exactly N GPUs, N x PP) or ``--gpu-counts 8,16,32,64`` (any of them),
  instead of every count 1..``--max-gpus``: a planner deploys on whole nodes, never on 61 GPUs.
* The SLA, one of: a TTL budget (``--ttl-budget-ms``; ``--tpot-ms`` is the same quantity as serving
  benchmarks name it, time per output token), or a floor on tokens/s/user
  (``--min-tokens-per-s-per-user``; with MTP a step emits more than one token, so the two differ).
* The answer at that budget: the best Helix layout, the best baseline layout (the union of the other
  strategies) and the ratio between them, each side's point being the one with the most tokens/s/GPU
  within the SLA (ties: fewer GPUs, then lower TTL), and the top K distinct layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from helix.errors import HelixInputError
from helix.search import Points
from helix.search_metrics import BASELINE_STRATEGIES, REL_TOL

MAX_GPUS = 4096


def parse_gpu_counts(text: str, flag: str = "--gpu-counts") -> tuple[int, ...]:
    """'8,16,32,64' -> (8, 16, 32, 64): positive integers <= 4096, each once, sorted."""
    parts = [p.strip() for p in str(text).split(",")]
    counts = []
    for p in parts:
        if not p.isdigit() or not 1 <= int(p) <= MAX_GPUS:
            raise HelixInputError(flag, f"must be a comma-separated list of GPU counts in 1..{MAX_GPUS} "
                                        f"(e.g. 8,16,32,64), got {text!r}")
        counts.append(int(p))
    return tuple(sorted(set(counts)))


def resolve_gpu_counts(total_gpus: int | None, gpu_counts: str | None, max_gpus: int | None,
                       default_max: int = 64) -> tuple[tuple[int, ...] | None, int]:
    """(the GPU counts to keep, or None for every count; the sweep's max_gpus) from the three flags."""
    if total_gpus is not None and gpu_counts is not None:
        raise HelixInputError("--total-gpus", "conflicts with --gpu-counts: give exactly one GPU count "
                                              "(--total-gpus N) or a list (--gpu-counts 8,16,...)")
    if total_gpus is not None:
        if isinstance(total_gpus, bool) or not 1 <= total_gpus <= MAX_GPUS:
            raise HelixInputError("--total-gpus", f"must be an integer in 1..{MAX_GPUS}, got {total_gpus}")
        counts, flag = (int(total_gpus),), "--total-gpus"
    elif gpu_counts is not None:
        counts, flag = parse_gpu_counts(gpu_counts), "--gpu-counts"
    else:
        return None, default_max if max_gpus is None else max_gpus
    if max_gpus is not None and max(counts) > max_gpus:
        raise HelixInputError(flag, f"asks for {max(counts)} GPUs, above --max-gpus {max_gpus}: drop --max-gpus "
                                    f"or raise it")
    return counts, max(counts)


@dataclass(frozen=True)
class Sla:
    """The service level a point must meet: TTL <= ttl_budget_s, or tokens/s/user >= min_tokens_per_s_per_user."""

    ttl_budget_s: float | None = None
    min_tokens_per_s_per_user: float | None = None
    flag: str = "--ttl-budget-ms"  # the flag the user gave, for messages and JSON

    def __post_init__(self) -> None:
        given = [v for v in (self.ttl_budget_s, self.min_tokens_per_s_per_user) if v is not None]
        if len(given) != 1:
            raise HelixInputError("sla", "exactly one of ttl_budget_s and min_tokens_per_s_per_user")
        if not (math.isfinite(given[0]) and given[0] > 0):
            raise HelixInputError(self.flag, f"must be a positive finite number, got {given[0]}")

    def mask(self, p: Points) -> np.ndarray:
        if self.ttl_budget_s is not None:
            return p.ttl_s <= self.ttl_budget_s * (1 + REL_TOL)
        return p.tokens_per_s_per_user >= self.min_tokens_per_s_per_user * (1 - REL_TOL)

    def describe(self) -> str:
        if self.ttl_budget_s is not None:
            name = "TPOT" if self.flag == "--tpot-ms" else "TTL"
            return f"{name} <= {self.ttl_budget_s * 1e3:g} ms"
        return f">= {self.min_tokens_per_s_per_user:g} tokens/s/user"

    def within(self) -> str:
        """How a message names the SLA: 'within 20 ms' or 'with >= 50 tokens/s/user'."""
        if self.ttl_budget_s is not None:
            return f"within {self.ttl_budget_s * 1e3:g} ms"
        return f"with {self.describe()}"

    def to_dict(self) -> dict:
        return {"flag": self.flag, "ttl_budget_ms": None if self.ttl_budget_s is None else self.ttl_budget_s * 1e3,
                "min_tokens_per_s_per_user": self.min_tokens_per_s_per_user}


def sla_from_args(ttl_budget_ms: float | None, tpot_ms: float | None, min_tokens_per_s_per_user: float | None) -> Sla:
    given = [(f, v) for f, v in (("--ttl-budget-ms", ttl_budget_ms), ("--tpot-ms", tpot_ms),
                                 ("--min-tokens-per-s-per-user", min_tokens_per_s_per_user)) if v is not None]
    if not given:
        raise HelixInputError("--ttl-budget-ms", "an SLA is required: give --ttl-budget-ms (or --tpot-ms, the same "
                                                 "quantity) or --min-tokens-per-s-per-user")
    if len(given) > 1:
        (f1, _), (f2, _) = given[:2]
        same = " (the same quantity: TPOT is the TTL of one decode step)" if {f1, f2} == {"--ttl-budget-ms",
                                                                                         "--tpot-ms"} else ""
        raise HelixInputError(f1, f"conflicts with {f2}{same}; give one SLA")
    flag, value = given[0]
    if not (math.isfinite(value) and value > 0):
        what = "tokens/s per user" if flag == "--min-tokens-per-s-per-user" else "milliseconds"
        raise HelixInputError(flag, f"must be a positive number of {what}, got {value}")
    if flag == "--min-tokens-per-s-per-user":
        return Sla(min_tokens_per_s_per_user=float(value), flag=flag)
    return Sla(ttl_budget_s=float(value) * 1e-3, flag=flag)


def best_index(p: Points, by_users: bool = False) -> int:
    """The point with the most tokens/s/GPU (or users), ties to fewer GPUs, then lower TTL."""
    keys = (p.ttl_s, p.num_gpus, -p.tokens_per_s_per_gpu) + ((-p.users,) if by_users else ())
    return int(np.lexsort(keys)[0])


def top_layouts(p: Points, k: int) -> list[int]:
    """Indices of the best point of each of the K best distinct layouts (most tokens/s/GPU first)."""
    if k < 1:
        raise HelixInputError("--top", f"must be an integer >= 1, got {k}")
    order = np.lexsort((p.ttl_s, p.num_gpus, -p.tokens_per_s_per_gpu))
    seen, out = set(), []
    for i in order:
        key = (p.strategy[i], *(int(getattr(p, f)[i]) for f in ("tpa", "kvp", "dp", "tpf", "ep", "pp")))
        if key not in seen:
            seen.add(key)
            out.append(int(i))
            if len(out) == k:
                break
    return out


def helix_vs_baseline(ok: Points) -> dict:
    """Best Helix and best baseline point within the SLA (most tokens/s/GPU) and their ratios; a side with no
    point is None and the ratios NaN."""
    sides = {}
    for name, sel in (("helix", ok.of("helix")), ("baseline", ok.of(*BASELINE_STRATEGIES))):
        if len(sel) == 0:
            sides[name] = None
            continue
        i = best_index(sel)
        sides[name] = {"layout": sel.layout(i).describe(), "layout_fields": layout_fields(sel.layout(i)),
                       "batch_size": int(sel.batch[i]), "users": int(sel.users[i]), "num_gpus": int(sel.num_gpus[i]),
                       "ttl_s": float(sel.ttl_s[i]), "tokens_per_s_per_user": float(sel.tokens_per_s_per_user[i]),
                       "tokens_per_s_per_gpu": float(sel.tokens_per_s_per_gpu[i]),
                       "max_users": int(sel.users.max())}
    h, b = sides["helix"], sides["baseline"]
    both = h is not None and b is not None
    return {**sides,
            "tokens_per_s_per_gpu_ratio": h["tokens_per_s_per_gpu"] / b["tokens_per_s_per_gpu"] if both else math.nan,
            "users_ratio": h["max_users"] / b["max_users"] if both else math.nan}


def layout_fields(layout) -> dict:
    """The structured layout every JSON carries beside the describe() string."""
    return {k: getattr(layout, k) for k in ("strategy", "tpa", "kvp", "dp", "tpf", "ep", "pp")}
