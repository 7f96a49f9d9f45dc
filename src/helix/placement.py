"""Where a layout's groups sit on scale-up (NVLink) domains: how many domains one group spans and how
many of its ranks share a domain.

The rule (docs/architecture.md, "Domains and placement"):

- a job of G GPUs runs on d = ceil(G / D) domains (D = ``hw.scale_up_domain_gpus``) and uses G / d GPUs
  of each where that divides (128 GPUs on two NVL72 racks: 64 + 64), else fills them (``used_per_domain``);
  the domains take consecutive global ranks from rank 0: [0, U) is domain 0, [U, 2U) domain 1, ...;
- global rank = pp_rank * N + r (PP outermost); inside a stage the layout's rank order applies
  (helix.layout): attention DP, then KVP, then TPA innermost (``kvp_inner``: DP, TPA, KVP innermost);
  FFN replica, then EP, then TPF innermost (``ep_inner``: replica, TPF, EP innermost);
- so every group is an arithmetic progression: ``size`` ranks ``stride`` apart, the groups of one kind
  tiling blocks of ``stride * size`` consecutive ranks;
- a group kind's placement is that of its least favoured group, since a collective runs in lockstep
  over all groups: ``domains`` = the most domains one group touches, ``per_domain`` = the fewest ranks
  a group has in one of the domains it touches (an even split: per_domain * domains = size).

Worked examples (tests/test_placement.py), D = 72 (GB200 NVL72):

- 144 GPUs, Helix KVP 16 x TPA 9: TPA innermost, each TPA group is 9 consecutive ranks (1 domain),
  each KVP group strides 9 and spans 2 domains, 8 ranks in each; with ``kvp_inner`` the KVP groups are
  16 consecutive ranks, but 72 is no multiple of 16: the group on ranks 64..79 splits 8 / 8 (2 domains,
  8 per domain) while TPA strides 16 and spans 2 domains, 1 rank in one of them (ranks 64 and 80... of
  the group 0, 16, ..., 128: 5 in domain 0, 4 in domain 1).
- 144 GPUs, TPF 8 x EP 18 (TPF innermost): TPF groups 8 consecutive ranks (1 domain), EP groups stride
  8 and span 2 domains with 9 ranks each.
- 72 GPUs = 8 x 9 or 24 x 3: every group of any order inside the one domain.
- D = 8 (HGX), 16 GPUs as KVP 8 x TPA 2: TPA [0, 1] inside a node, KVP [0, 2, ..., 14] across 2 nodes,
  4 ranks in each; with ``kvp_inner`` KVP [0..7] is one node and TPA [0, 8] spans 2 nodes, 1 rank each.
"""

from __future__ import annotations

import functools

import numpy as np

from helix.cost.collectives import used_per_domain  # the one placement rule

RUNS_FROM = 256  # arrays longer than this are run-length compressed first
# group kinds a collective runs over (helix.cost.messages.Message.group)
GROUPS = ("tpa", "kvp", "attention", "dp", "tpf", "ep", "ffn", "stage", "pp")


def group_stride(group: str, tpa, kvp, tpf, ep, stage, kvp_inner=False, ep_inner=False):
    """Distance between consecutive ranks of one group of ``group`` under the layout's rank order."""
    kvp_inner, ep_inner = np.asarray(kvp_inner, dtype=bool), np.asarray(ep_inner, dtype=bool)
    strides = {"tpa": lambda: np.where(kvp_inner, kvp, 1), "kvp": lambda: np.where(kvp_inner, 1, tpa),
               "attention": lambda: 1, "dp": lambda: tpa * kvp, "tpf": lambda: np.where(ep_inner, ep, 1),
               "ep": lambda: np.where(ep_inner, 1, tpf), "ffn": lambda: 1, "stage": lambda: 1, "pp": lambda: stage}
    if group not in strides:
        raise ValueError(f"unknown group {group!r}; allowed: {', '.join(GROUPS)}")
    return np.asarray(strides[group](), dtype=np.int64)


@functools.lru_cache(maxsize=65536)
def progression_span(stride: int, size: int, total: int, domain: int) -> tuple[int, int]:
    """(domains, per_domain) of the least favoured group, counted rank by rank: the groups of ``size``
    ranks ``stride`` apart tile blocks of stride * size ranks over ranks 0..total-1."""
    block = stride * size
    ranks = np.arange(total // block * block).reshape(-1, size, stride).transpose(0, 2, 1).reshape(-1, size)
    dom = ranks // int(used_per_domain(total, domain))  # non-decreasing along each group
    change = np.diff(dom, axis=1) != 0
    domains = 1 + change.sum(axis=1)
    # run lengths of equal domains along each group: positions where a run ends
    ends = np.concatenate([change, np.ones((len(dom), 1), dtype=bool)], axis=1)
    idx = np.nonzero(ends)
    pos = idx[1]
    starts = np.concatenate([[True], idx[0][1:] != idx[0][:-1]])
    runs = np.where(starts, pos + 1, pos - np.concatenate([[0], pos[:-1]]))
    return int(domains.max()), int(runs.min())


def span(stride, size, total, domain: int):
    """(domains, per_domain) arrays for groups of ``size`` ranks ``stride`` apart among ``total`` ranks
    (N x PP) on domains of ``domain`` GPUs (``used_per_domain`` of them used). Closed forms where the
    blocks align with the domains; the rest counted rank by rank once per distinct (stride, size, total)."""
    s, p, t = (np.asarray(a, dtype=np.int64) for a in (stride, size, total))
    s, p, t = np.broadcast_arrays(s, p, t)
    if np.all((t <= domain) | (p == 1)):  # the whole job in one domain: today's single-domain costs exactly
        return np.ones(p.shape, dtype=np.int64), p.copy()
    if s.ndim == 1 and s.size > RUNS_FROM:
        # a sweep repeats each layout over its batch grid: work on the runs of equal rows, then expand
        key = (s * 2**21 + p) * 2**21 + t
        heads = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        if len(heads) * 4 < s.size:
            d, k = span(s[heads], p[heads], t[heads], domain)
            lengths = np.diff(np.append(heads, s.size))
            return np.repeat(d, lengths), np.repeat(k, lengths)
    dom = used_per_domain(t, domain)
    block = s * p
    inside = (t <= dom) | (p == 1) | ((block <= dom) & (dom % block == 0))
    spread = (block % dom == 0) & (s < dom) & (dom % s == 0)  # dom / s ranks of a group in each of block / dom
    apart = (s % dom == 0)  # every rank in its own domain
    domains = np.where(inside, 1, np.where(spread, block // dom, p))
    per_domain = np.where(inside, p, np.where(spread, dom // np.maximum(s, 1), 1))
    rest = ~(inside | spread | apart)
    if rest.any():
        keys, inverse = np.unique(np.stack([s[rest], p[rest], t[rest]]), axis=1, return_inverse=True)
        found = np.array([progression_span(int(a), int(b), int(c), domain) for a, b, c in keys.T], dtype=np.int64)
        domains[rest], per_domain[rest] = found[inverse.ravel(), 0], found[inverse.ravel(), 1]
    return domains, per_domain


def group_span(group: str, size, tpa, kvp, dp, tpf, ep, pp, domain: int, kvp_inner=False, ep_inner=False):
    """(domains, per_domain) of the groups of kind ``group`` (of ``size`` ranks) of a layout."""
    stage = np.asarray(tpa) * kvp * dp
    stride = group_stride(group, tpa, kvp, tpf, ep, stage, kvp_inner, ep_inner)
    return span(stride, size, stage * pp, domain)


def layout_placement(layout, domain: int) -> dict[str, tuple[int, int]]:
    """{group kind: (domains, per_domain)} of one Layout (every kind, whether or not a collective uses it)."""
    sizes = {"tpa": layout.tpa, "kvp": layout.kvp, "attention": layout.tpa * layout.kvp, "dp": layout.dp,
             "tpf": layout.tpf, "ep": layout.ep, "ffn": layout.tpf * layout.ep, "stage": layout.gpus_per_stage,
             "pp": layout.pp}
    out = {}
    for group, size in sizes.items():
        d, k = group_span(group, size, layout.tpa, layout.kvp, layout.dp, layout.tpf, layout.ep, layout.pp, domain,
                          layout.kvp_inner, layout.ep_inner)
        out[group] = (int(d), int(k))
    return out
