"""alpha-beta times of collectives, per algorithm, with the fastest available algorithm chosen per message.

``n`` is the message in bytes as a rank hands it to the collective:
- all_reduce: the full buffer (each rank holds n bytes, ends with the sum);
- all_gather: the output (p chunks of n/p);
- all_to_all: the rank's whole send buffer, its own chunk included ((p-1)/p of it crosses links);
- p2p: the bytes sent.
Bandwidth is the per-direction link bandwidth times the link efficiency.

A group whose ranks span d > 1 scale-up domains, with at least k of them in each (helix.placement),
runs hierarchically (``hierarchical_s``): an inside phase over NVLink among the k_in = ceil(p/d) ranks
of one domain and an across phase over the scale-out network among d ranks, one per domain, each
through its own NIC (so a domain's k NICs carry its traffic side by side):
- all-reduce = reduce-scatter inside + all-reduce across (n/k per NIC) + all-gather inside, timed as
  all_reduce(n, k_in) inside + all_reduce(n/k, d) across;
- all-gather (n = output) = all_gather(n/k, d) across + all_gather(n, k_in) inside: each NIC brings
  in (d-1) n/p, a domain's share of the remote chunks;
- all-to-all: every byte has its own destination, so (p-k)/p of the buffer (= (d-1)/d n, evenly split)
  crosses each rank's own NIC, while the k_in - 1 chunks for domain peers go over NVLink at the same
  time (one kernel issues both): max(all_to_all(n k_in/p, k_in) inside, (p-k)/p n across);
- p2p (the PP hand-offs): the share of the PP - 1 hand-offs that cross a domain boundary, (d-1)/(PP-1),
  runs at the network's rate and latency.
The across phase runs at ``hw.scale_out_bytes_per_s_per_direction`` x link efficiency and pays
``scale_out_latency_s`` (+ ``scale_out_latency_per_doubling_s`` x log2 d with a fitted op model); a
group inside one domain (d = 1) costs exactly the single-domain formulas.

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
kernels); a group that spans domains runs the fitted form over NVLink inside a domain and the same
form at the network's bandwidth across domains, whose latency grows per doubling of the domains
(``hw.scale_out_latency_per_doubling_s``: DeepEP's published EP8 -> EP128 growth), the across phase of
an all-reduce on NCCL's form (a custom all-reduce needs peer memory), unless the form was measured
across nodes already (SGLang's DeepEP rows: used as measured, whatever the placement).
"""

from __future__ import annotations

import numpy as np

KINDS = ("all_reduce", "all_to_all", "all_gather", "p2p")


def _link(p, hw, network=None):
    """(bandwidth bytes/s, extra latency s) for a group of p GPUs: ``network`` True = the scale-out network,
    False = NVLink, None = by the group's size (a group larger than the domain wholly at the network's rate)."""
    if network:
        return hw.scale_out_bytes_per_s_per_direction * hw.link_efficiency, hw.scale_out_latency_s
    if network is not None:
        return hw.link_bytes_per_s_per_direction * hw.link_efficiency, 0.0
    inside = np.asarray(p) <= hw.scale_up_domain_gpus
    if inside.all():  # the common case: skip two full-size selects
        return hw.link_bytes_per_s_per_direction * hw.link_efficiency, 0.0
    bw = np.where(inside, hw.link_bytes_per_s_per_direction, hw.scale_out_bytes_per_s_per_direction)
    return bw * hw.link_efficiency, np.where(inside, 0.0, hw.scale_out_latency_s)


def all_reduce_s(n_bytes, p, hw, network=None):
    """The cheapest of the all-reduce algorithms the hardware's library runs (``hw.all_reduce_algorithms``)."""
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n_bytes, dtype=np.float64)
    bw, extra = _link(p, hw, network)
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


def all_to_all_alpha_beta(p, hw, network=None):
    """(alpha s, beta s/byte) of the all-to-all: both algorithms move the same traffic, so the
    cheaper latency wins for every size and the time is exactly alpha + beta * n (0 when p = 1)."""
    p = np.asarray(p, dtype=np.float64)
    bw, extra = _link(p, hw, network)
    ring = hw.ring_base_latency_s + (p - 1) * hw.ring_hop_latency_s
    # without peer memory (gloo: ``[ring]``) the all-to-all is pairwise sends, the direct form alone
    latency = np.minimum(ring, hw.sync_latency_s) if has_peer_memory(hw) else hw.sync_latency_s + 0 * p
    alpha = np.where(p > 1, latency + extra, 0.0)
    return alpha, (p - 1) / p / bw


def all_to_all_s(n_bytes, p, hw, network=None):
    alpha, beta = all_to_all_alpha_beta(p, hw, network)
    return alpha + beta * np.asarray(n_bytes, dtype=np.float64)


def all_gather_s(n_bytes, p, hw, network=None):
    # Same traffic as the all-to-all, (p-1)/p of the output crosses each link; its latency is
    # all_gather_alpha_beta's (the ring unless the library reaches peer memory).
    alpha, beta = all_gather_alpha_beta(p, hw, network)
    return alpha + beta * np.asarray(n_bytes, dtype=np.float64)


def p2p_s(n_bytes, hw, crossing=0.0):
    """One send; ``crossing``: the share of such sends that leave the domain (0 = NVLink, 1 = the network)."""
    n = np.asarray(n_bytes, dtype=np.float64)
    inside = hw.sync_latency_s + n / _link(2, hw, False)[0]
    bw, extra = _link(2, hw, True)
    return inside + np.asarray(crossing, dtype=np.float64) * (hw.sync_latency_s + n / bw + extra - inside)


def used_per_domain(total, domain: int):
    """GPUs a job of ``total`` uses in each of its ceil(total / domain) domains: total / d where that
    divides (the job spread evenly: 128 GPUs on two NVL72 racks are 64 + 64), else ``domain`` (full domains,
    the last one partly). The one placement rule; helix.placement applies it to every group of a layout."""
    t = np.asarray(total, dtype=np.int64)
    d = np.maximum(-(-t // domain), 1)
    return np.where(t % d == 0, t // d, domain)


def contiguous_placement(p, domain_gpus: int):
    """(domains, per_domain) of a job of p GPUs placed by ``used_per_domain`` (the default where a caller gives
    no placement): ceil(p/D) domains, p/d GPUs in each where that divides, else full domains and the last
    holding the fewest, p - (d-1) D."""
    p = np.asarray(p, dtype=np.int64)
    d = np.maximum(-(-p // domain_gpus), 1)
    return d, np.where(p % d == 0, p // d, np.maximum(p - (d - 1) * domain_gpus, 1))


def hierarchical_s(kind: str, n_bytes, p, domains, per_domain, inside, across):
    """Seconds of one collective over p ranks on ``domains`` domains with at least ``per_domain`` ranks in
    each (the module docstring's formulas); ``inside(kind, n, g)`` times g ranks of one domain over
    NVLink, ``across(kind, n, g)`` g ranks in different domains over the network. d = 1: inside(kind, n, p)."""
    p = np.asarray(p, dtype=np.float64)
    n = np.asarray(n_bytes, dtype=np.float64)
    d = np.asarray(domains, dtype=np.float64)
    split = d > 1
    whole = inside(kind, n, p)
    if not np.any(split):
        return whole
    k = np.asarray(per_domain, dtype=np.float64)
    k_in = np.ceil(p / d)  # the fullest domain's ranks run the inside phases
    if kind == "all_reduce":
        t = inside(kind, n, k_in) + across(kind, n / k, d)
    elif kind == "all_gather":
        t = across(kind, n / k, d) + inside(kind, n, k_in)
    elif kind == "all_to_all":
        # across(all_to_all, m, d) moves (d-1)/d m per NIC: m chosen so that it is (p-k)/p n
        t = np.maximum(inside(kind, n * k_in / p, k_in), across(kind, n * (p - k) / p * d / np.maximum(d - 1, 1), d))
    else:
        raise ValueError(f"no hierarchical form for {kind!r}; allowed: all_reduce, all_gather, all_to_all")
    return np.where(split, t, whole)


def measured_collective_s(kind: str, n_bytes, p, hw, table: str = "", experts=None, domains=None, per_domain=None):
    """A collective timed by the fitted forms of ``hw.op_model`` (see the module docstring); ``domains`` and
    ``per_domain``: the group's placement (None: consecutive ranks from a domain's first)."""
    model = hw.op_model
    names = [table] if table else (["custom_all_reduce", "all_reduce"] if kind == "all_reduce" else [kind])
    forms = [f for f in (model.collective(name) for name in names) if f is not None]
    if not forms:
        raise KeyError(f"op model {model.engine!r} has no collective form for {names[-1]!r}")
    if domains is None:
        domains, per_domain = contiguous_placement(p, hw.scale_up_domain_gpus)
    network = forms[-1]  # NCCL's all-reduce across domains (a custom all-reduce needs peer memory), else the form

    def across(kind_, n, g):
        latency = hw.scale_out_latency_s + hw.scale_out_latency_per_doubling_s * np.log2(np.maximum(g, 1.0))
        return network.time_s(kind_, n, g, hw.scale_out_bytes_per_s_per_direction * hw.link_efficiency, latency,
                              experts=experts)

    best = None
    for form in forms:
        def inside(kind_, n, g, form=form):
            return form.time_s(kind_, n, g, hw.collective_bandwidth_scale * form.bus_bytes_per_s, experts=experts)
        if form.max_measured_group > hw.scale_up_domain_gpus:  # measured across nodes: as measured
            # each tier's own links rescaled: past the domain the traffic is the NIC's, not NVLink's
            g = np.asarray(p, dtype=np.float64)
            scale = np.where(g > hw.scale_up_domain_gpus, hw.scale_out_collective_bandwidth_scale,
                             hw.collective_bandwidth_scale)
            t = form.time_s(kind, n_bytes, g, scale * form.bus_bytes_per_s, experts=experts)
        else:
            t = hierarchical_s(kind, n_bytes, p, domains, per_domain, inside, across)
        best = t if best is None else np.minimum(best, t)
    return best


def collective_s(kind: str, n_bytes, p, hw, table: str = "", experts=None, domains=None, per_domain=None):
    """Seconds of one collective; ``table`` names a specific fitted form (moe_dispatch, moe_combine),
    ``experts`` the MoE's expert slots where that form reads them; ``domains`` / ``per_domain`` the group's
    placement (helix.placement; None: p consecutive ranks from a domain's first). For p2p, ``p`` is the
    PP group and ``domains`` the domains it spans: (domains - 1) of its p - 1 hand-offs cross."""
    if kind == "p2p":
        p = np.asarray(p)
        d = np.ones_like(p) if domains is None else np.asarray(domains)
        return np.where(p > 1, p2p_s(n_bytes, hw, (d - 1) / np.maximum(p - 1, 1)), 0.0)
    if kind not in KINDS:
        raise ValueError(f"unknown collective kind {kind!r}; allowed: {', '.join(KINDS)}")
    if hw.op_model is not None:
        return measured_collective_s(kind, n_bytes, p, hw, table, experts, domains, per_domain)
    if domains is None:
        domains, per_domain = contiguous_placement(p, hw.scale_up_domain_gpus)
    timed = {"all_reduce": all_reduce_s, "all_to_all": all_to_all_s, "all_gather": all_gather_s}[kind]
    return hierarchical_s(kind, n_bytes, p, domains, per_domain, lambda k_, n, g: timed(n, g, hw, False),
                          lambda k_, n, g: timed(n, g, hw, True))


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


def all_gather_alpha_beta(p, hw, network=None):
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
    bw, extra = _link(p, hw, network)
    alpha = ring_latency_s("all_gather", p, hw)
    if has_peer_memory(hw):
        alpha = np.minimum(alpha, hw.sync_latency_s)
    return np.where(p > 1, alpha + extra, 0.0), link_traffic("all_gather", p) / bw


def link_traffic(kind: str, p):
    """The fraction of the message ``n`` each link carries per direction: 2(p-1)/p for the ring (and two-shot)
    all-reduce, (p-1)/p for the all-gather and the all-to-all (the module docstring's forms)."""
    p = np.asarray(p, dtype=np.float64)
    return (2 if kind == "all_reduce" else 1) * (p - 1) / p
