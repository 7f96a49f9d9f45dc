"""How a decode step hides communication: HOP-B (and the TP baseline's pipeline) and DP+EP two-batch overlap.

- HOP-B [paper §2.1.3, Fig. 3]: the batch is split into c chunks; chunk i's KVP all-to-all overlaps
  chunk i+1's attention. Each chunk runs its own attention kernel and combine (each pays its fixed
  cost), each chunk's collective pays its own latency, so the best c is chosen per configuration (or a
  fixed c given, as a runtime with a fixed chunk count runs), helix.cost.overlap. The TP baseline
  pipelines its O-projection all-reduce with attention and O-projection the same way [INFERRED].
- Two-batch overlap (DP+EP, SGLang --enable-two-batch-overlap): the batch is split into two micro-batches
  that alternate through the layers, one's dispatch/combine hidden behind the other's compute. Each
  micro-batch pays every op's fixed cost and reads the weights again. Modelled as one continuous
  two-stage pipeline over 2 x layers items of (compute a, communication c) of one micro-batch:
  T = a + c + (2 L - 1) (max(a, c) + (1 - eta) min(a, c)); the per-step ops (embedding, LM head) stay serial.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from helix.cost import collectives
from helix.cost.messages import step_messages
from helix.cost.op_timing import time_s
from helix.cost.ops import ceil_div
from helix.cost.overlap import CHUNK_COUNTS, pipelined_s
from helix.cost.terms import attention_ops, combine_ops, o_projection_ops

# per_request: HOP-B OFF as the paper's Fig. 3 draws it (each request's exchange its own collective, none hidden)
OVERLAPS = ("auto", "serial", "pipelined", "per_request")
PIPELINED_PHASE = {"helix": "kvp_all_to_all", "medha": "kvp_all_reduce", "tp": "o_projection_all_reduce",
                   "tp_pp": "o_projection_all_reduce", "dp_ep": None}
DEFAULT_OVERLAP = {"helix": "pipelined", "tp": "pipelined", "tp_pp": "pipelined", "medha": "serial",
                   "dp_ep": "serial"}
# which layer group each collective belongs to (how often it runs: helix.cost.inventory.layer_counts)
PHASE_GROUP = {"kvp_all_to_all": "attention", "kvp_all_reduce": "attention", "o_projection_all_reduce": "attention",
               "ffn_dp_all_gather": "attention", "ffn_all_reduce": "dense_ffn", "moe_tp_all_reduce": "moe_ffn",
               "moe_ep_all_gather": "moe_ffn", "moe_dispatch_counts": "moe_ffn", "moe_dispatch_all_to_all": "moe_ffn",
               "moe_combine_all_to_all": "moe_ffn", "embedding_all_reduce": "step", "pp_handoff": "step",
               "lm_head_all_gather": "step"}
HOT_RANK_PHASES = ("moe_dispatch_all_to_all", "moe_combine_all_to_all")


def message_s(m, hw, expert_imbalance: float = 1.0):
    """Seconds of one call of a collective; the hot expert rank receives imbalance x the mean rows of
    the DP+EP dispatch and combine."""
    hot = expert_imbalance if m.phase in HOT_RANK_PHASES else 1.0
    return collectives.collective_s(m.kind, hot * m.n_bytes, m.group_size, hw, m.table, m.experts)


ARRAY_FIELDS = ("tpa", "kvp", "dp", "tpf", "ep", "pp", "batch", "context_tokens")


def _subset(shape, sel, full):
    """The shape restricted to the points ``sel`` (a boolean mask over the broadcast shape ``full``)."""
    return replace(shape, **{f: np.broadcast_to(getattr(shape, f), full)[sel] for f in ARRAY_FIELDS})


def pipeline_exposed(shape, hw, msgs, traversed, hopb_chunks, comm_exposed):
    """Replace the pipelined phase's exposed time by what the chunked pipeline leaves exposed, and return
    the chunking's own cost (seconds per step): the extra compute of running the phase's ops once per
    chunk (each chunk pays its fixed costs), booked as a compute term rather than as communication.

    For a pipeline of total time T over chunks whose compute sums to A_c (A_1 unchunked), the phase adds
    T - A_1 to the step: exposed communication = T - A_c, never above the serial (one-collective) time,
    and the rest is the chunking's overhead (A_c - A_1, and every chunk's own collective latency beyond
    the serial one).
    With the best chunk count searched, a count c is only tried where c < 2 B_loc: beyond, every chunk
    holds one request and the pipeline is the one of the next power of two above B_loc, already tried."""
    phase = PIPELINED_PHASE[shape.strategy]
    if phase is None or phase not in msgs:
        return 0.0
    m = msgs[phase]
    with_o = phase == "o_projection_all_reduce"
    eta = float(hw.comm_overlap_efficiency)

    def pipeline(sub, chunks, message_bytes, group):
        """(pipelined time, the chunks' compute summed) of the phase for the points of ``sub``."""
        requests = sub.requests_per_rank
        rows = ceil_div(sub.batch, chunks * sub.dp)
        chunk = replace(sub, batch=rows * sub.dp)
        ops = attention_ops(chunk) + combine_ops(chunk) + (o_projection_ops(chunk) if with_o else [])
        a = sum(time_s(op, hw) for op in ops)
        c = collectives.collective_s(m.kind, rows * message_bytes / np.maximum(requests, 1.0), group, hw, m.table,
                                     m.experts)
        n = np.minimum(chunks, requests)
        return pipelined_s(a, c, n, eta), n * a

    unchunked = pipeline(shape, 1, m.n_bytes, m.group_size)[1]
    if hopb_chunks is not None:
        total, compute = pipeline(shape, int(hopb_chunks), m.n_bytes, m.group_size)
    else:
        total, compute = pipeline(shape, 1, m.n_bytes, m.group_size)
        full = np.broadcast(total, m.n_bytes, m.group_size).shape
        total = np.array(np.broadcast_to(total, full), dtype=np.float64)
        compute = np.array(np.broadcast_to(compute, full), dtype=np.float64)
        requests = np.broadcast_to(shape.requests_per_rank, full)
        for c in CHUNK_COUNTS[1:]:
            sel = requests * 2 > c
            if not sel.any():
                break
            sub = _subset(shape, sel, full)
            t, a = pipeline(sub, c, np.broadcast_to(m.n_bytes, full)[sel], np.broadcast_to(m.group_size, full)[sel])
            better = t < total[sel]
            total[sel] = np.where(better, t, total[sel])
            compute[sel] = np.where(better, a, compute[sel])
    extra = traversed * np.maximum(total - unchunked, 0.0)  # what the phase adds to the unchunked compute
    serial = m.calls_per_step * message_s(m, hw)
    exposed = np.minimum(np.minimum(traversed * np.maximum(total - compute, 0.0), serial), extra)
    overhead = extra - exposed
    noise = overhead <= 1e-9 * extra  # one chunk (or float noise): no overhead of its own
    comm_exposed[phase] = np.where(noise, extra, exposed)
    return np.where(noise, 0.0, overhead)


def per_request_exposed(shape, hw, msgs, comm_total, comm_exposed) -> None:
    """HOP-B OFF as the paper's Fig. 3 draws it [paper §2.1.3]: the pipelined phase runs one collective per
    request (B_loc calls, each paying the collective latency on its request's share of the bytes), all
    exposed. ``overlap="serial"`` is the batched reading: one collective per layer for the whole batch."""
    phase = PIPELINED_PHASE[shape.strategy]
    if phase is None or phase not in msgs:
        return
    m = msgs[phase]
    requests = np.maximum(shape.requests_per_rank, 1.0)
    one = collectives.collective_s(m.kind, m.n_bytes / requests, m.group_size, hw, m.table, m.experts)
    comm_total[phase] = comm_exposed[phase] = m.calls_per_step * requests * one


def two_batch_overlap(shape, hw, msgs, counts, group_terms):
    """(compute terms, HBM reads, comm total, comm exposed) per step under two-batch overlap."""
    half = replace(shape, batch=ceil_div(shape.batch, 2))
    half_times, half_reads = group_terms(half, hw)
    full_times, full_reads = group_terms(shape, hw)
    layer_groups = ("attention", "dense_ffn", "moe_ffn")
    t, reads = {}, {}
    for group in layer_groups:
        for term, sec in half_times[group].items():
            t[term] = t.get(term, 0.0) + 2 * counts[group] * sec
        for key, b in half_reads[group].items():
            reads[key] = reads.get(key, 0.0) + 2 * counts[group] * b
    for term, sec in full_times["step"].items():
        t[term] = t.get(term, 0.0) + sec
    for key, b in full_reads["step"].items():
        reads[key] = reads.get(key, 0.0) + b
    half_msgs = {x.phase: x for x in step_messages(shape.model, shape.precision, shape.strategy, shape.tpa,
                                                   shape.kvp, shape.dp, shape.tpf, shape.ep, shape.pp, half.batch,
                                                   shape.query_tokens)}
    comm_total = {}
    for name, m in msgs.items():
        if PHASE_GROUP[name] == "step":
            comm_total[name] = m.calls_per_step * message_s(m, hw, shape.expert_imbalance)
        else:
            comm_total[name] = 2 * half_msgs[name].calls_per_step * message_s(half_msgs[name], hw,
                                                                                shape.expert_imbalance)
    layers = counts["attention"]
    compute = sum(2 * counts[g] * sum(half_times[g].values()) for g in layer_groups)
    layer_comm = sum(v for k, v in comm_total.items() if PHASE_GROUP[k] != "step")
    a, c = compute / (2 * layers), layer_comm / (2 * layers)
    pipeline = pipelined_s(a, c, 2 * layers, float(hw.comm_overlap_efficiency))
    exposed_total = np.maximum(pipeline - compute, 0.0)
    share = exposed_total / np.maximum(layer_comm, 1e-300)
    comm_exposed = {k: (v if PHASE_GROUP[k] == "step" else v * share) for k, v in comm_total.items()}
    return t, reads, comm_total, comm_exposed
