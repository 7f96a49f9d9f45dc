"""How a decode step hides communication: HOP-B (and the TP baseline's pipeline) and DP+EP two-batch overlap.

- HOP-B [paper §2.1.3, Fig. 3]: the batch is split into c chunks; chunk i's KVP all-to-all overlaps
  chunk i+1's attention. Each chunk runs its own attention kernel and combine (each pays its fixed
  cost), each chunk's collective pays its own latency, so the best c is chosen per configuration (or a
  fixed c given, as a runtime with a fixed chunk count runs), helix.cost.overlap. The TP baseline
  pipelines its O-projection all-reduce with attention and O-projection the same way [INFERRED].
- Two-batch overlap (DP+EP, SGLang --enable-two-batch-overlap): the batch is split into two micro-batches
  that alternate through the layers on one stream, one's dispatch/combine in flight while the other
  computes. Each micro-batch pays every op's fixed cost and reads the weights again. The schedule is
  the five-stage decode pipeline DeepSeek describes (open-infra-index day 6: "a 5-stage pipeline during
  the decode phase") as SGLang runs it (batch_overlap/operations_strategy.py,
  _compute_moe_deepseek_blog_decode: yields after attention prepare, after attention core + gate, after
  dispatch send + shared experts, after experts + combine send, after combine receive; the second
  micro-batch two stages behind). So each micro-batch's dispatch hides behind its own shared experts
  plus the other micro-batch's attention prepare, and its combine behind the other's attention core
  (attention, W_UV, O-projection, post-attention norm, router); what does not fit is exposed. Only the
  RDMA in flight hides: DeepEP's low-latency send and receive kernels run on the SMs (DeepSeek
  profile-data README: "after RDMA messages are issued, all GPU SMs are freed"), a share f of the
  exchange's time (hardware ``moe_dispatch_sm_fraction`` / ``moe_combine_sm_fraction``), so
      exposed(c, h) = f c + max(c', h) + (1 - eta) min(c', h) - h,   c' = (1 - f) c
  per micro-batch and MoE layer; the last layer's second micro-batch has nothing left to hide its
  combine (and only its shared experts for its dispatch). The per-step ops (embedding, LM head) and the
  leading dense layers (no exchange) add their compute.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from helix.cost import collectives
from helix.cost.inventory import layer_ops
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
PHASE_GROUP = {"dsa_topk_all_gather": "attention",
               "kvp_all_to_all": "attention", "kvp_all_reduce": "attention", "o_projection_all_reduce": "attention",
               "ffn_dp_all_gather": "attention", "ffn_all_reduce": "dense_ffn", "moe_tp_all_reduce": "moe_ffn",
               "moe_ep_all_gather": "moe_ffn", "moe_dispatch_counts": "moe_ffn", "moe_dispatch_all_to_all": "moe_ffn",
               "moe_combine_all_to_all": "moe_ffn", "embedding_all_reduce": "step", "pp_handoff": "step",
               "lm_head_all_gather": "step"}
HOT_RANK_PHASES = ("moe_dispatch_all_to_all", "moe_combine_all_to_all")


def counts_ride_in_dispatch(hw) -> bool:
    """DeepEP's low-latency dispatch sends each expert's row count inside the dispatch kernel itself
    (no separate exchange [S14]); where a measured dispatch form times the dispatch, that form already
    holds the counts' cost, so the counts message (which the runtime sends as its own all-to-all, and
    whose bytes the traffic test still counts) adds no time of its own."""
    return hw.op_model is not None and hw.op_model.collective("moe_dispatch") is not None


def message_s(m, hw, expert_imbalance: float = 1.0):
    """Seconds of one call of a collective; the hot expert rank receives imbalance x the mean rows of
    the DP+EP dispatch and combine."""
    if m.phase == "moe_dispatch_counts" and counts_ride_in_dispatch(hw):
        return 0.0 * m.n_bytes
    hot = expert_imbalance if m.phase in HOT_RANK_PHASES else 1.0
    return collectives.collective_s(m.kind, hot * m.n_bytes, m.group_size, hw, m.table, m.experts, m.domains,
                                    m.per_domain)


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

    def pipeline(sub, chunks, message_bytes, group, domains=m.domains, per_domain=m.per_domain):
        """(pipelined time, the chunks' compute summed) of the phase for the points of ``sub``."""
        requests = sub.requests_per_rank
        rows = ceil_div(sub.batch, chunks * sub.dp)
        chunk = replace(sub, batch=rows * sub.dp)
        ops = attention_ops(chunk) + combine_ops(chunk) + (o_projection_ops(chunk) if with_o else [])
        a = sum(time_s(op, hw) for op in ops)
        c = collectives.collective_s(m.kind, rows * message_bytes / np.maximum(requests, 1.0), group, hw, m.table,
                                     m.experts, domains, per_domain)
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
            placed = [None if x is None else np.broadcast_to(x, full)[sel] for x in (m.domains, m.per_domain)]
            t, a = pipeline(sub, c, np.broadcast_to(m.n_bytes, full)[sel], np.broadcast_to(m.group_size, full)[sel],
                            *placed)
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
    one = collectives.collective_s(m.kind, m.n_bytes / requests, m.group_size, hw, m.table, m.experts, m.domains,
                                   m.per_domain)
    comm_total[phase] = comm_exposed[phase] = m.calls_per_step * requests * one


def overlap_exposed_s(comm_s, hidden_s, overlap_efficiency: float = 1.0):
    """What of a transfer of ``comm_s`` stays exposed when ``hidden_s`` of compute runs while it flies:
    max(c, h) + (1 - eta) min(c, h) - h (eta = 1: max(c - h, 0))."""
    c, h = np.asarray(comm_s, dtype=np.float64), np.asarray(hidden_s, dtype=np.float64)
    return np.maximum(c, h) + (1.0 - overlap_efficiency) * np.minimum(c, h) - h


def tbo_exposed_s(comm_s, sm_fraction, hidden_s, overlap_efficiency: float = 1.0):
    """What of a DeepEP low-latency exchange of ``comm_s`` stays exposed under two-batch overlap while
    ``hidden_s`` of the other micro-batch's compute runs: its send and receive kernels (``sm_fraction`` of
    it) occupy the SMs whatever is in flight, only the RDMA between them hides."""
    c = np.asarray(comm_s, dtype=np.float64)
    return sm_fraction * c + overlap_exposed_s((1.0 - sm_fraction) * c, hidden_s, overlap_efficiency)


def tbo_stages(shape, hw) -> dict:
    """Seconds per micro-batch and MoE layer of the stages that hide the exchange (SGLang's decode TBO):
    ``prepare`` (the attention ops before the attention kernel: input norm, projections, q/kv norms,
    RoPE; the KV-cache write runs inside the attention backend), ``core`` (the rest of the attention
    half-layer and the router) and ``shared`` (the shared expert)."""
    groups = layer_ops(shape)
    first = next(i for i, op in enumerate(groups["attention"]) if op.kind == "attention")
    prepare = [op for op in groups["attention"][:first] if op.name != "kv_cache_write"]
    core = [op for op in groups["attention"] if all(op is not x for x in prepare)]
    core += [op for op in groups["moe_ffn"] if op.term == "moe_router"]
    shared = [op for op in groups["moe_ffn"] if op.term == "moe_shared_experts"]
    return {name: sum((time_s(op, hw) for op in ops), 0.0)
            for name, ops in (("prepare", prepare), ("core", core), ("shared", shared))}


DISPATCH_PHASES = ("moe_dispatch_counts", "moe_dispatch_all_to_all")


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
    # the same groups, so the same placement, as the full batch's messages
    half_msgs = {x.phase: replace(x, domains=msgs[x.phase].domains, per_domain=msgs[x.phase].per_domain)
                 for x in step_messages(shape.model, shape.precision, shape.strategy, shape.tpa, shape.kvp, shape.dp,
                                        shape.tpf, shape.ep, shape.pp, half.batch, shape.query_tokens)}
    one = {name: message_s(m, hw, shape.expert_imbalance) for name, m in half_msgs.items()}
    comm_total = {}
    for name, m in msgs.items():
        if PHASE_GROUP[name] == "step":
            comm_total[name] = m.calls_per_step * message_s(m, hw, shape.expert_imbalance)
        else:
            comm_total[name] = 2 * half_msgs[name].calls_per_step * one[name]
    eta = float(hw.comm_overlap_efficiency)
    stage = tbo_stages(half, hw)
    dispatch = sum((one[k] for k in DISPATCH_PHASES if k in one), 0.0)
    combine = one.get("moe_combine_all_to_all", 0.0)
    f_d, f_c = float(hw.moe_dispatch_sm_fraction), float(hw.moe_combine_sm_fraction)
    # per MoE layer: both micro-batches' exposure; the last layer's second micro-batch instead hides its
    # dispatch behind its shared expert alone and its combine behind nothing
    e_dispatch = tbo_exposed_s(dispatch, f_d, stage["shared"] + stage["prepare"], eta)
    e_combine = tbo_exposed_s(combine, f_c, stage["core"], eta)
    moe_layers = counts["moe_ffn"]
    exposed_d = 2 * moe_layers * e_dispatch + np.where(
        moe_layers > 0, tbo_exposed_s(dispatch, f_d, stage["shared"], eta) - e_dispatch, 0.0)
    exposed_c = 2 * moe_layers * e_combine + np.where(moe_layers > 0, combine - e_combine, 0.0)
    comm_exposed = {}
    for k, v in comm_total.items():
        if PHASE_GROUP[k] == "step":
            comm_exposed[k] = v
        elif k in DISPATCH_PHASES:
            comm_exposed[k] = exposed_d * one[k] / np.maximum(dispatch, 1e-300)
        elif k == "moe_combine_all_to_all":
            comm_exposed[k] = exposed_c
        else:  # a layer collective the schedule does not hide (none in DP+EP today): serial
            comm_exposed[k] = v
    return t, reads, comm_total, comm_exposed
