"""One decode step: the op inventory of every strategy, timed and composed into TTL, throughput and memory.

``evaluate`` takes layout fields, batch and context as numpy arrays (or scalars) and returns a
``StepResult`` of arrays; ``simulate`` is the same for one ``Layout``. No Python loop runs per
configuration: the sweep of a million points and the explain path share every formula.

The ops of each term are listed by helix.cost.terms (one function per term, inventory in
helix.cost.inventory); each op is timed by the hardware's fitted op model (measured kernel tables) or,
without one, by the plain roofline (helix.cost.op_timing); collectives are helix.cost.messages timed by
helix.cost.collectives. A token crosses PP x ceil(L/PP) layer slots (lockstep stages); the leading
dense layers run the dense FFN, the rest the MoE. TTL = compute + exposed communication + step overhead.

Overlap ("auto" picks per strategy), helix.step_overlap:
  helix: HOP-B, the KVP all-to-all pipelined with per-request attention [paper §2.1.3]
  tp, tp_pp: the O-projection all-reduce pipelined with attention and O-projection the same batch-wise way
      [INFERRED: the paper says only that its TP baseline "includes communication-computation overlap", §3.2]
  medha, dp_ep: serial (Medha "exposes all communication" [paper §3.2]); DP+EP with ``tbo``: two
      micro-batches, one's dispatch/combine hidden behind the other's compute (SGLang two-batch overlap)
  "per_request": the pipelined phase as one exposed collective per request (HOP-B OFF as Fig. 3 draws it)
MTP (``mtp_tokens`` K > 0): the step verifies 1 + K tokens per request and runs K draft passes of the
MTP module (one decoder layer, its 2H -> H projection, the LM head); it yields ``mtp_acceptance`` tokens
per request on average, so tokens/s/user = acceptance / TTL [DeepSeek-V3 report §2.2, §5.4.3].
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from helix import step_overlap
from helix.cost import memory
from helix.cost.inventory import layer_counts, layer_ops
from helix.cost.messages import step_messages
from helix.cost.op_timing import time_s
from helix.cost.op_types import Shape
from helix.cost.terms import EXPERT_ROUTINGS, mtp_projection_ops
from helix.errors import HelixInputError
from helix.layout import Layout, check_layout_for_model
from helix.placement import group_span
from helix.specs.precision import PrecisionSpec

COMPUTE_TERMS = ("norms", "qkv_projection", "rope_kv_write", "attention", "combine", "o_projection", "ffn",
                 "moe_router", "moe_experts", "moe_shared_experts", "embedding_lm_head", "sampling", "mtp_draft",
                 "hopb_chunking", "step_overhead")
# DSA models (DeepSeek-V3.2) break attention into the indexer, its top-k and the sparse MLA (helix.cost.dsa_terms)
DSA_TERMS = ("indexer", "index_topk", "sparse_attention")
OVERLAPS = step_overlap.OVERLAPS
# HBM-read keys (the paper's App. A accounting) of the terms that read weights or KV
READ_KEY = {"qkv_projection": "qkv_projection", "attention": "attention", "o_projection": "o_projection",
            "ffn": "ffn", "moe_router": "moe", "moe_experts": "moe", "moe_shared_experts": "moe",
            "embedding_lm_head": "lm_head", "indexer": "indexer", "sparse_attention": "attention"}


def compute_terms(model) -> tuple[str, ...]:
    """The breakdown's compute terms: COMPUTE_TERMS, with attention split into DSA_TERMS for a DSA model."""
    if not model.is_dsa:
        return COMPUTE_TERMS
    i = COMPUTE_TERMS.index("attention")
    return COMPUTE_TERMS[:i] + DSA_TERMS + COMPUTE_TERMS[i + 1:]


@dataclass(frozen=True)
class StepResult:
    """One decode step (arrays for a sweep, 0-d arrays for one configuration)."""

    ttl_s: np.ndarray
    tokens_per_s_per_user: np.ndarray
    tokens_per_s_per_gpu: np.ndarray
    memory_per_gpu_bytes: np.ndarray
    weight_bytes_per_gpu: np.ndarray
    kv_bytes_per_gpu: np.ndarray
    num_gpus: np.ndarray
    feasible: np.ndarray
    reason_code: np.ndarray
    breakdown: dict[str, np.ndarray] = field(default_factory=dict)  # term -> s per step (compute + exposed comm)
    comm_total_s: dict[str, np.ndarray] = field(default_factory=dict)  # collective -> s per step if serial
    comm_exposed_s: dict[str, np.ndarray] = field(default_factory=dict)
    hbm_read_bytes_per_gpu: dict[str, np.ndarray] = field(default_factory=dict)  # App. A reads per step
    tokens_per_step_per_user: float = 1.0  # accepted tokens per request per step (MTP acceptance)

    @property
    def infeasible_reason(self):
        names = np.asarray(memory.REASONS, dtype=object)[self.reason_code]
        return names if np.ndim(self.reason_code) else str(names)

    def to_dict(self) -> dict:
        """JSON-ready dict of a scalar result."""
        f = float
        return {
            "ttl_s": f(self.ttl_s),
            "tokens_per_s_per_user": f(self.tokens_per_s_per_user),
            "tokens_per_s_per_gpu": f(self.tokens_per_s_per_gpu),
            "memory_per_gpu_bytes": f(self.memory_per_gpu_bytes),
            "weight_bytes_per_gpu": f(self.weight_bytes_per_gpu),
            "kv_bytes_per_gpu": f(self.kv_bytes_per_gpu),
            "num_gpus": int(self.num_gpus),
            "feasible": bool(self.feasible),
            "infeasible_reason": self.infeasible_reason or None,
            "tokens_per_step_per_user": f(self.tokens_per_step_per_user),
            "breakdown": {k: f(v) for k, v in self.breakdown.items()},
            "communication": {k: {"total_s": f(self.comm_total_s[k]), "exposed_s": f(self.comm_exposed_s[k])}
                              for k in self.comm_total_s},
            "hbm_read_bytes_per_gpu": {k: f(v) for k, v in self.hbm_read_bytes_per_gpu.items()},
        }


def group_terms(shape: Shape, hw) -> tuple[dict, dict]:
    """Per layer group (attention, dense_ffn, moe_ffn, step): {term: s per run}, {read key: bytes per run}."""
    times, reads = {}, {}
    for group, ops in layer_ops(shape).items():
        t, r = {}, {}
        for op in ops:
            t[op.term] = t.get(op.term, 0.0) + time_s(op, hw)
            if op.term in READ_KEY:
                key = READ_KEY[op.term]
                r[key] = r.get(key, 0.0) + np.where(op.active, op.read_bytes, 0.0)
        times[group], reads[group] = t, r
    return times, reads


def _check(overlap, hopb_chunks, expert_imbalance, redundant_experts, tbo, strategy, mtp_tokens, mtp_acceptance,
           expert_routing):
    if overlap not in OVERLAPS:
        raise HelixInputError("overlap", f"unknown {overlap!r}; allowed: {', '.join(OVERLAPS)}")
    if hopb_chunks is not None and (isinstance(hopb_chunks, bool) or not isinstance(hopb_chunks, int | np.integer)
                                    or hopb_chunks < 1):
        raise HelixInputError("hopb_chunks", f"must be None or an integer >= 1, got {hopb_chunks!r}")
    if not expert_imbalance >= 1:
        raise HelixInputError("expert_imbalance", f"must be >= 1, got {expert_imbalance}")
    if isinstance(redundant_experts, bool) or not isinstance(redundant_experts, int | np.integer) \
            or redundant_experts < 0:
        raise HelixInputError("redundant_experts", f"must be an integer >= 0, got {redundant_experts!r}")
    if expert_routing not in EXPERT_ROUTINGS:
        raise HelixInputError("expert_routing", f"unknown {expert_routing!r}; allowed: {', '.join(EXPERT_ROUTINGS)}")
    if tbo and strategy != "dp_ep":
        raise HelixInputError("tbo", f"two-batch overlap needs the dp_ep strategy, got {strategy!r}")
    if isinstance(mtp_tokens, bool) or not isinstance(mtp_tokens, int | np.integer) or mtp_tokens < 0:
        raise HelixInputError("mtp_tokens", f"must be an integer >= 0, got {mtp_tokens!r}")
    accepted = 1.0 if mtp_acceptance is None else mtp_acceptance
    if not 1.0 <= accepted <= mtp_tokens + 1:
        raise HelixInputError("mtp_acceptance", f"must be in [1, mtp_tokens + 1 = {mtp_tokens + 1}], got {accepted}")
    return float(accepted)


def _one_batch(shape, hw, msgs, counts, mode: str, hopb_chunks, expert_imbalance: float):
    """(compute terms, HBM reads, communication total, communication exposed) of a step run as one batch:
    each layer group's terms times its layer count, the collectives serial, HOP-B-pipelined or per request."""
    times, group_reads = group_terms(shape, hw)
    t = {k: 0.0 for k in compute_terms(shape.model)}
    reads = {}
    for group, terms in times.items():
        for term, sec in terms.items():
            t[term] = t[term] + counts[group] * sec
        for key, b in group_reads[group].items():
            reads[key] = reads.get(key, 0.0) + counts[group] * b
    comm_total = {name: m.calls_per_step * step_overlap.message_s(m, hw, expert_imbalance) for name, m in msgs.items()}
    comm_exposed = dict(comm_total)
    if mode == "pipelined":
        t["hopb_chunking"] = step_overlap.pipeline_exposed(shape, hw, msgs, counts["attention"], hopb_chunks,
                                                           comm_exposed)
    elif mode == "per_request":
        step_overlap.per_request_exposed(shape, hw, msgs, comm_total, comm_exposed)
    return t, reads, comm_total, comm_exposed


def evaluate(model, hw, precision: PrecisionSpec, strategy: str, tpa, kvp, dp, tpf, ep, pp, batch, context_tokens,
             overlap: str = "auto", expert_imbalance: float = 1.0, hopb_chunks: int | None = None,
             redundant_experts: int = 0, tbo: bool = False, mtp_tokens: int = 0,
             mtp_acceptance: float | None = None, fused_combine: bool = False, kvp_inner=False,
             ep_inner=False, expert_routing: str = "auto") -> StepResult:
    """Vectorised decode-step model; layout fields, batch and context broadcast against each other.

    ``hopb_chunks``: the number of request chunks of the pipelined phase (HOP-B) when it is pipelined;
    None picks the best count per configuration, an integer c runs min(c, B_loc) chunks of ceil(B_loc/c)
    requests, as a runtime with a fixed chunk count does (1 = no overlap). ``redundant_experts``: R extra
    expert slots (EP divides E + R). ``expert_routing``: the routing the MoE kernels are timed at, power_law
    or balanced (auto: balanced with redundant experts, EPLB). ``tbo``: DP+EP two-batch overlap. ``mtp_tokens`` K and
    ``mtp_acceptance`` A: MTP speculative decoding (see the module docstring). ``fused_combine``: the KVP
    combine runs inside another kernel (no op of its own; a structural variant of the sensitivity study).
    ``kvp_inner`` / ``ep_inner`` (booleans or arrays): the layout's rank order (helix.layout), which places
    each collective's group on the scale-up domains (helix.placement).
    """
    accepted = _check(overlap, hopb_chunks, expert_imbalance, redundant_experts, tbo, strategy, mtp_tokens,
                      mtp_acceptance, expert_routing)
    as_int = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    tpa, kvp, dp, tpf, ep, pp, batch, S = (as_int(a) for a in (tpa, kvp, dp, tpf, ep, pp, batch, context_tokens))
    shape = Shape(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, batch, S, 1 + int(mtp_tokens),
                  int(redundant_experts), float(expert_imbalance), expert_routing, bool(fused_combine))
    full = np.broadcast(tpa, kvp, dp, tpf, ep, pp, batch, S).shape
    counts = layer_counts(model, pp)
    msgs = step_messages(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, batch, shape.query_tokens)
    msgs = {m.phase: m for m in place_messages(msgs, hw, tpa, kvp, dp, tpf, ep, pp, kvp_inner, ep_inner)}
    mode = step_overlap.DEFAULT_OVERLAP[strategy] if overlap == "auto" else overlap
    if tbo:
        t, reads, comm_total, comm_exposed = step_overlap.two_batch_overlap(shape, hw, msgs, counts, group_terms)
    else:
        t, reads, comm_total, comm_exposed = _one_batch(shape, hw, msgs, counts, mode, hopb_chunks, expert_imbalance)
    if mtp_tokens:
        t["mtp_draft"] = t.get("mtp_draft", 0.0) + mtp_tokens * _draft_pass_s(shape, hw, expert_imbalance, msgs)
    if hw.step_overhead_s:
        t["step_overhead"] = float(hw.step_overhead_s)
    breakdown = {k: np.broadcast_to(t.get(k, 0.0), full) for k in compute_terms(model)}
    breakdown.update({k: np.broadcast_to(v, full) for k, v in comm_exposed.items()})
    ttl = sum(breakdown.values())

    w = memory.weight_bytes_per_gpu(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, redundant_experts)
    kv = memory.kv_bytes_per_gpu(model, precision, tpa, kvp, dp, pp, batch, S)
    feasible, code = memory.feasibility(w, kv, hw, batch, dp)
    num_gpus = tpa * kvp * dp * pp
    return StepResult(
        ttl_s=ttl, tokens_per_s_per_user=accepted / ttl,
        tokens_per_s_per_gpu=batch.astype(np.float64) * pp * accepted / (ttl * num_gpus),
        memory_per_gpu_bytes=w + kv, weight_bytes_per_gpu=w + 0 * batch, kv_bytes_per_gpu=kv,
        num_gpus=num_gpus + 0 * batch, feasible=feasible, reason_code=code, breakdown=breakdown,
        comm_total_s=comm_total, comm_exposed_s=comm_exposed,
        hbm_read_bytes_per_gpu={k: np.broadcast_to(v, full) for k, v in reads.items()},
        tokens_per_step_per_user=accepted)


def place_messages(msgs, hw, tpa, kvp, dp, tpf, ep, pp, kvp_inner=False, ep_inner=False) -> list:
    """Each message with its group's placement on the scale-up domains (domains spanned, fewest ranks in
    one), from the layout's rank order (helix.placement)."""
    total = np.asarray(tpa) * kvp * dp * pp
    if np.all(total <= hw.scale_up_domain_gpus):  # the whole job in one domain (the paper's <= 64 GPUs): no work
        return [replace(m, domains=1, per_domain=m.group_size) for m in msgs]
    placed = []
    for m in msgs:
        if not m.group:  # a group of one
            m = replace(m, domains=1, per_domain=m.group_size)
        else:
            d, k = group_span(m.group, m.group_size, tpa, kvp, dp, tpf, ep, pp, hw.scale_up_domain_gpus, kvp_inner,
                              ep_inner)
            m = replace(m, domains=d, per_domain=k)
        placed.append(m)
    return placed


def _draft_pass_s(shape: Shape, hw, expert_imbalance: float, placed: dict):
    """One MTP draft pass at one token per request: a decoder layer of the model's last kind, its
    collectives (serial), the 2H -> H projection, LM head and sampling."""
    one = replace(shape, query_tokens=1)
    times, _ = group_terms(one, hw)
    ffn = "moe_ffn" if shape.model.is_moe else "dense_ffn"
    compute = sum(times["attention"].values()) + sum(times[ffn].values()) + sum(times["step"].values())
    compute = compute + sum(time_s(op, hw) for op in mtp_projection_ops(one))
    msgs = step_messages(shape.model, shape.precision, shape.strategy, shape.tpa, shape.kvp, shape.dp, shape.tpf,
                         shape.ep, shape.pp, shape.batch, 1)
    msgs = [replace(m, domains=placed[m.phase].domains, per_domain=placed[m.phase].per_domain) for m in msgs]
    comm = sum(step_overlap.message_s(m, hw, expert_imbalance) for m in msgs
               if step_overlap.PHASE_GROUP.get(m.phase) in ("attention", ffn, "step"))
    return compute + comm


def simulate(model, hw, layout: Layout, batch_size: int, context_tokens: int, precision: PrecisionSpec | None = None,
             overlap: str = "auto", expert_imbalance: float = 1.0, hopb_chunks: int | None = None,
             redundant_experts: int = 0, tbo: bool = False, mtp_tokens: int = 0,
             mtp_acceptance: float | None = None, allow_uneven: bool = False,
             fused_combine: bool = False, expert_routing: str = "auto") -> StepResult:
    """One configuration: validates the layout against the model, then runs ``evaluate`` on scalars."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise HelixInputError("batch_size", f"must be an integer >= 1, got {batch_size!r}")
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int | np.integer) or context_tokens < 1:
        raise HelixInputError("context_tokens", f"must be an integer >= 1, got {context_tokens!r}")
    check_layout_for_model(layout, model, allow_uneven=allow_uneven, redundant_experts=redundant_experts)
    return evaluate(model, hw, precision or PrecisionSpec(), layout.strategy, layout.tpa, layout.kvp, layout.dp,
                    layout.tpf, layout.ep, layout.pp, batch_size, context_tokens, overlap=overlap,
                    expert_imbalance=expert_imbalance, hopb_chunks=hopb_chunks, redundant_experts=redundant_experts,
                    tbo=tbo, mtp_tokens=mtp_tokens, mtp_acceptance=mtp_acceptance, fused_combine=fused_combine,
                    kvp_inner=layout.kvp_inner, ep_inner=layout.ep_inner, expert_routing=expert_routing)
