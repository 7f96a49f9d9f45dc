"""alpha-beta times of collectives, per algorithm, with the fastest available algorithm chosen per message.

``n`` is the message in bytes as a rank hands it to the collective:
- all_reduce: the full buffer (each rank holds n bytes, ends with the sum);
- all_gather: the output (p chunks of n/p);
- all_to_all: the rank's whole send buffer, its own chunk included ((p-1)/p of it crosses links);
- p2p: the bytes sent.
Bandwidth is the per-direction link bandwidth times the link efficiency; a group larger than the
scale-up domain runs at the scale-out bandwidth and pays the scale-out latency.

Algorithms (Thakur, Rabenseifner & Gropp [S29]; NCCL tuning.cc [S7]; TRT-LLM MultiShot [S27]):
- ring:      base + steps * hop + traffic / bw   (steps = 2(p-1) for AR, p-1 otherwise)
- one-shot:  sync + (p-1) n / bw                 (AR: every rank reads every peer's buffer)
- two-shot:  2 sync + 2 (p-1)/p n / bw           (AR as reduce-scatter + all-gather through peer memory)
- NVLS:      nvls + n / bw                       (in-switch reduction, about n per direction)
- direct:    sync + (p-1)/p n / bw               (all-to-all and all-gather through peer memory)
The all-reduce chooses among ``hw.all_reduce_algorithms`` only (gloo, and NCCL without peer memory,
run the ring alone; a calibrated CPU profile says ``[ring]``).

With a fitted op model (``hw.op_model``) the measured forms replace these analytic ones
(helix.cost.optime.CollectiveForm): the all-reduce is the faster of NCCL's and the engine's custom
all-reduce, MoE dispatch and combine have their own forms (DeepEP / TensorRT-LLM all-to-all
kernels), and a group that leaves the scale-up domain runs at the network's bandwidth with a latency
that grows per doubling of the group beyond the domain (``hw.scale_out_latency_per_doubling_s``),
unless its form was measured across nodes already.
"""

from __future__ import annotations

import numpy as np

KINDS = ("all_reduce", "all_to_all", "all_gather", "p2p")


def _link(p, hw):
    """(bandwidth bytes/s, extra latency s) for a group of p GPUs."""
    inside = np.asarray(p) <= hw.scale_up_domain_gpus
    if inside.all():  # the common case: skip two full-size selects
        return hw.link_bytes_per_s_per_direction * hw.link_efficiency, 0.0
    bw = np.where(inside, hw.link_bytes_per_s_per_direction, hw.scale_out_bytes_per_s_per_direction)
    return bw * hw.link_efficiency, np.where(inside, 0.0, hw.scale_out_latency_s)


def all_reduce_s(n_bytes, p, hw):
    """The cheapest of the all-reduce algorithms the hardware's library runs (``hw.all_reduce_algorithms``)."""
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n_bytes, dtype=np.float64)
    bw, extra = _link(p, hw)
    wire = n / bw
    algorithms = hw.all_reduce_algorithms
    # ring and two-shot move the same 2(p-1)/p n, so only their latencies compete
    latencies = []
    if "ring" in algorithms:
        latencies.append(hw.ring_base_latency_s + 2 * (p - 1) * hw.ring_hop_latency_s)
    if "two_shot" in algorithms:
        latencies.append(2 * hw.sync_latency_s + 0 * p)
    best = None
    if latencies:
        best = (latencies[0] if len(latencies) == 1 else np.minimum(*latencies)) + 2 * (p - 1) / p * wire
    if "one_shot" in algorithms:
        one_shot = hw.sync_latency_s + (p - 1) * wire
        best = one_shot if best is None else np.minimum(best, one_shot)
    if "nvls" in algorithms and hw.nvls_latency_s > 0:
        nvls = hw.nvls_latency_s + wire
        best = nvls if best is None else np.minimum(best, nvls)
    return np.where(p > 1, best + extra, 0.0)


def all_to_all_alpha_beta(p, hw):
    """(alpha s, beta s/byte) of the all-to-all: both algorithms move the same traffic, so the
    cheaper latency wins for every size and the time is exactly alpha + beta * n (0 when p = 1)."""
    p = np.asarray(p, dtype=np.float64)
    bw, extra = _link(p, hw)
    ring = hw.ring_base_latency_s + (p - 1) * hw.ring_hop_latency_s
    # without peer memory (gloo: ``[ring]``) the all-to-all is pairwise sends, the direct form alone
    latency = np.minimum(ring, hw.sync_latency_s) if has_peer_memory(hw) else hw.sync_latency_s + 0 * p
    alpha = np.where(p > 1, latency + extra, 0.0)
    return alpha, (p - 1) / p / bw


def all_to_all_s(n_bytes, p, hw):
    alpha, beta = all_to_all_alpha_beta(p, hw)
    return alpha + beta * np.asarray(n_bytes, dtype=np.float64)


def all_gather_s(n_bytes, p, hw):
    # Same traffic as the all-to-all, (p-1)/p of the output crosses each link; its latency is
    # all_gather_alpha_beta's (the ring unless the library reaches peer memory).
    alpha, beta = all_gather_alpha_beta(p, hw)
    return alpha + beta * np.asarray(n_bytes, dtype=np.float64)


def p2p_s(n_bytes, hw, crosses_domain=False):
    bw, extra = _link(np.where(crosses_domain, hw.scale_up_domain_gpus + 1, 2), hw)
    return hw.sync_latency_s + np.asarray(n_bytes, dtype=np.float64) / bw + extra


def measured_collective_s(kind: str, n_bytes, p, hw, table: str = "", experts=None):
    """A collective timed by the fitted forms of ``hw.op_model`` (see the module docstring)."""
    model = hw.op_model
    names = [table] if table else (["custom_all_reduce", "all_reduce"] if kind == "all_reduce" else [kind])
    p = np.asarray(p, dtype=np.float64)
    best = None
    for name in names:
        form = model.collective(name)
        if form is None:
            continue
        inside = form.time_s(kind, n_bytes, p, hw.collective_bandwidth_scale * form.bus_bytes_per_s,
                             experts=experts)
        if form.max_measured_group <= hw.scale_up_domain_gpus and np.any(p > hw.scale_up_domain_gpus):
            doublings = np.log2(np.maximum(p / hw.scale_up_domain_gpus, 1.0))
            outside = form.time_s(kind, n_bytes, p, hw.scale_out_bytes_per_s_per_direction * hw.link_efficiency,
                                  hw.scale_out_latency_s + hw.scale_out_latency_per_doubling_s * doublings,
                                  experts=experts)
            inside = np.where(p > hw.scale_up_domain_gpus, outside, inside)
        best = inside if best is None else np.minimum(best, inside)
    if best is None:
        raise KeyError(f"op model {model.engine!r} has no collective form for {names[0]!r}")
    return best


def collective_s(kind: str, n_bytes, p, hw, table: str = "", experts=None):
    """Seconds of one collective; ``table`` names a specific fitted form (moe_dispatch, moe_combine),
    ``experts`` the MoE's expert slots where that form reads them."""
    if hw.op_model is not None and kind != "p2p":
        return measured_collective_s(kind, n_bytes, p, hw, table, experts)
    if kind == "all_reduce":
        return all_reduce_s(n_bytes, p, hw)
    if kind == "all_to_all":
        return all_to_all_s(n_bytes, p, hw)
    if kind == "all_gather":
        return all_gather_s(n_bytes, p, hw)
    if kind == "p2p":
        return np.where(np.asarray(p) > 1, p2p_s(n_bytes, hw), 0.0)
    raise ValueError(f"unknown collective kind {kind!r}; allowed: {', '.join(KINDS)}")


# Peer-memory algorithms: a library that runs one of these can also gather straight from its peers'
# buffers (the direct form); one that lists only the ring (gloo, NCCL without peer memory) cannot.
PEER_MEMORY_ALGORITHMS = ("one_shot", "two_shot", "nvls")


def has_peer_memory(hw) -> bool:
    """Whether the hardware's library reaches peer memory (one of ``PEER_MEMORY_ALGORITHMS`` listed)."""
    return any(a in PEER_MEMORY_ALGORITHMS for a in hw.all_reduce_algorithms)


def ring_latency_s(kind: str, p, hw):
    """Latency of the ring form: base + steps x hop, steps = 2(p-1) for the all-reduce (reduce-scatter then
    all-gather), p-1 for every other kind; 0 when p = 1 (no group, no call)."""
    p = np.asarray(p, dtype=np.float64)
    steps = 2 * (p - 1) if kind == "all_reduce" else p - 1
    return np.where(p > 1, hw.ring_base_latency_s + steps * hw.ring_hop_latency_s, 0.0)


def all_gather_alpha_beta(p, hw):
    """(alpha s, beta s/byte) of the all-gather of an n-byte output: beta = (p-1)/p / bw, as the all-to-all.

    alpha is the ring's latency, or the direct form's (sync) where that is lower and the library reaches
    peer memory (``PEER_MEMORY_ALGORITHMS`` in ``hw.all_reduce_algorithms``). Why not min(ring, sync)
    everywhere, as the all-to-all: gloo (and NCCL without peer memory) gathers around a ring and has no
    direct form, and on a calibrated CPU profile (``[ring]``) sync is the all-to-all's fitted latency, which
    an all-gather never pays: the gloo all-gathers measured by ``helix calibrate`` take the ring's latency
    (docs/validation-cpu: 0.6-1.5 ms at 64 B-64 KiB against the ring's 0.88 ms and the all-to-all's 0.61),
    and the calibration fit (helix.validation.fit) assumes the ring. 0 when p = 1.
    """
    p = np.asarray(p, dtype=np.float64)
    bw, extra = _link(p, hw)
    alpha = ring_latency_s("all_gather", p, hw)
    if has_peer_memory(hw):
        alpha = np.minimum(alpha, hw.sync_latency_s)
    return np.where(p > 1, alpha + extra, 0.0), link_traffic("all_gather", p) / bw


def link_traffic(kind: str, p):
    """The fraction of the message ``n`` each link carries per direction: 2(p-1)/p for the ring (and two-shot)
    all-reduce, (p-1)/p for the all-gather and the all-to-all (the module docstring's forms)."""
    p = np.asarray(p, dtype=np.float64)
    return (2 if kind == "all_reduce" else 1) * (p - 1) / p
