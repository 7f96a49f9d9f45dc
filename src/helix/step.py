"""One decode step: every per-layer phase of every strategy, composed into TTL, throughput and memory.

``evaluate`` takes layout fields, batch and context as numpy arrays (or scalars) and returns a
``StepResult`` of arrays; ``simulate`` is the same for one ``Layout``. No Python loop runs per
configuration: the sweep of a million points and the explain path share every formula.

Per layer and GPU (B_loc = ceil(B/DP), S_loc = ceil(S/KVP)):
  qkv_projection   pre-attention weights (replicated across KVP), 2 B_loc W FLOPs (MLA absorb included)
  attention        KV read B_loc S_loc ceil(Kc/TPA) e b_kv; FLOPs B_loc Q/TPA S_loc f  [paper App. A]
  combine          LSE rescale of the received partials (Helix / Medha, KVP > 1)
  o_projection     O weights / (TPA KVP) for Helix, / TPA otherwise
  ffn              dense SwiGLU, 3 H F / TP_ffn
  moe_*            router; the hottest EP rank sees imbalance x its fair share of tokens: it touches
                   E/EP (1 - (1 - k/E)^(imbalance B)) distinct experts and computes imbalance x
                   B k / EP token-expert pairs (and, under DP+EP, receives that much more in the
                   dispatch and combine); shared experts
  collectives      helix.cost.messages, timed by helix.cost.collectives
Per step: embedding + vocabulary-parallel LM head, PP hand-offs, and ``hw.step_overhead_s`` (host /
framework work outside the layer ops: sampling, scheduling, Python; 0 on the GPU presets).
A token crosses PP x ceil(L/PP) layer slots (stages run in lockstep). TTL = compute + exposed communication.

Overlap ("auto" picks per strategy):
  helix: HOP-B, the KVP all-to-all pipelined with per-request attention [paper §2.1.3]
  tp, tp_pp: the baseline's overlap, the O-projection all-reduce pipelined with attention and
      O-projection the same batch-wise way [INFERRED: the paper says only that its TP baseline
      "includes communication-computation overlap", §3.2]
  medha, dp_ep: serial (Medha "exposes all communication" [paper §3.2]; DP+EP [ASSUMPTION])
  Both pipelines hide only ``hw.comm_overlap_efficiency`` of the shorter stage (1 on the GPU presets,
  the paper's perfect overlap; measured by ``helix calibrate`` on CPU), see helix.cost.overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helix.cost import collectives, memory
from helix.cost.messages import dense_ffn_group, step_messages, vocab_group
from helix.cost.ops import ceil_div, op_time_s
from helix.cost.overlap import best_chunked_s, chunked_s
from helix.errors import HelixInputError
from helix.layout import Layout, check_layout_for_model
from helix.specs.precision import PrecisionSpec

COMPUTE_TERMS = ("qkv_projection", "attention", "combine", "o_projection", "ffn", "moe_router", "moe_experts",
                 "moe_shared_experts", "embedding_lm_head", "step_overhead")
OVERLAPS = ("auto", "serial", "pipelined")
PIPELINED_PHASE = {"helix": "kvp_all_to_all", "medha": "kvp_all_reduce", "tp": "o_projection_all_reduce",
                   "tp_pp": "o_projection_all_reduce", "dp_ep": None}
COMBINE_PHASE = {"helix": "kvp_all_to_all", "medha": "kvp_all_reduce"}  # the KVP combine's collective
DEFAULT_OVERLAP = {"helix": "pipelined", "tp": "pipelined", "tp_pp": "pipelined", "medha": "serial",
                   "dp_ep": "serial"}


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
    hbm_read_bytes_per_gpu: dict[str, np.ndarray] = field(default_factory=dict)  # term -> bytes per step

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
            "breakdown": {k: f(v) for k, v in self.breakdown.items()},
            "communication": {k: {"total_s": f(self.comm_total_s[k]), "exposed_s": f(self.comm_exposed_s[k])}
                              for k in self.comm_total_s},
            "hbm_read_bytes_per_gpu": {k: f(v) for k, v in self.hbm_read_bytes_per_gpu.items()},
        }


def _as_int(x):
    return np.asarray(x, dtype=np.int64)


def evaluate(model, hw, precision: PrecisionSpec, strategy: str, tpa, kvp, dp, tpf, ep, pp, batch, context_tokens,
             overlap: str = "auto", expert_imbalance: float = 1.0, hopb_chunks: int | None = None) -> StepResult:
    """Vectorised decode-step model; layout fields, batch and context broadcast against each other.

    ``hopb_chunks``: the number of request chunks of the pipelined phase (HOP-B) when it is pipelined;
    None picks the best count per configuration, an integer c runs min(c, B_loc) chunks of ceil(B_loc/c)
    requests, as a runtime with a fixed chunk count does (1 = no overlap).
    """
    if overlap not in OVERLAPS:
        raise HelixInputError("overlap", f"unknown {overlap!r}; allowed: {', '.join(OVERLAPS)}")
    if hopb_chunks is not None and (isinstance(hopb_chunks, bool) or not isinstance(hopb_chunks, int | np.integer)
                                    or hopb_chunks < 1):
        raise HelixInputError("hopb_chunks", f"must be None or an integer >= 1, got {hopb_chunks!r}")
    if expert_imbalance < 1:
        raise HelixInputError("expert_imbalance", f"must be >= 1, got {expert_imbalance}")
    tpa, kvp, dp, tpf, ep, pp = (_as_int(a) for a in (tpa, kvp, dp, tpf, ep, pp))
    batch, S = _as_int(batch), _as_int(context_tokens)
    cc = precision.compute_class
    b_attn, b_ffn = precision.bytes_of("attention_weights"), precision.bytes_of("ffn_weights")
    L, Q, H = model.num_layers, model.num_query_heads, model.hidden_dim

    B = batch.astype(np.float64)
    B_loc = ceil_div(batch, dp).astype(np.float64)
    S_loc = ceil_div(S, kvp).astype(np.float64)
    layers_per_stage = ceil_div(L, pp)
    traversed = pp * layers_per_stage
    moe_layers = model.num_moe_layers if model.is_moe else 0
    dense_layers = traversed - moe_layers
    ffn_tokens = B_loc if strategy == "dp_ep" else B

    # ---- per-layer compute ops: (bytes read, FLOPs, launches)
    qkv_elems = memory.qkv_weight_elements(model, tpa)
    qkv_bytes = qkv_elems * b_attn
    kv_tok = memory.kv_bytes_per_token_per_layer_per_gpu(model, precision, tpa)
    attn_flops_tok = (Q / tpa) * model.attention_flops_per_cached_token_per_head

    def attention_chunk(rows):
        """Attention over the local KV shard for ``rows`` requests: KV read + FLOPs [paper App. A]."""
        return op_time_s(rows * S_loc * kv_tok, rows * S_loc * attn_flops_tok, hw, cc)

    o_elems = memory.o_weight_elements(model, strategy, tpa, kvp)

    def o_proj_chunk(rows):
        return op_time_s(o_elems * b_attn, 2 * rows * o_elems, hw, cc)

    t = {k: np.zeros(np.broadcast(tpa, batch, S).shape) for k in COMPUTE_TERMS}
    reads = {}
    t["qkv_projection"] = traversed * op_time_s(qkv_bytes, 2 * B_loc * qkv_elems, hw, cc)
    reads["qkv_projection"] = traversed * qkv_bytes + 0 * B
    t["attention"] = traversed * attention_chunk(B_loc)
    reads["attention"] = traversed * B_loc * S_loc * kv_tok
    t["o_projection"] = traversed * o_proj_chunk(B_loc)
    reads["o_projection"] = traversed * o_elems * b_attn + 0 * B

    msgs = {m.phase: m for m in step_messages(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp, batch)}
    if strategy in COMBINE_PHASE:
        partial = msgs[COMBINE_PHASE[strategy]].n_bytes
        t["combine"] = traversed * np.where(kvp > 1, op_time_s(partial, 0.0, hw, cc), 0.0)

    ffn_elems = memory.dense_ffn_weight_elements(model, strategy, tpf, ep)
    t["ffn"] = dense_layers * op_time_s(ffn_elems * b_ffn, 2 * ffn_tokens * ffn_elems, hw, cc, launches=2)
    reads["ffn"] = dense_layers * ffn_elems * b_ffn + 0 * B
    if model.is_moe:
        E, k = model.num_experts, model.experts_per_token
        E_loc = E / ep
        # expected distinct local experts hit when the rank sees imbalance x B tokens' worth of routing
        touched = E_loc * (1.0 - (1.0 - k / E) ** (expert_imbalance * B))
        per_expert = model.expert_params / tpf
        hot_pairs = np.minimum(expert_imbalance * B * k / ep, B * np.minimum(k, E_loc))
        t["moe_router"] = moe_layers * op_time_s(model.router_params * b_ffn, 2 * ffn_tokens * model.router_params,
                                                 hw, cc)
        t["moe_experts"] = moe_layers * op_time_s(touched * per_expert * b_ffn, 2 * hot_pairs * per_expert, hw, cc,
                                                  launches=2)
        shared = model.num_shared_experts * model.expert_params / dense_ffn_group(strategy, tpf, ep)
        if model.num_shared_experts:
            t["moe_shared_experts"] = moe_layers * op_time_s(shared * b_ffn, 2 * ffn_tokens * shared, hw, cc,
                                                             launches=2)
        reads["moe"] = moe_layers * (touched * per_expert + shared + model.router_params) * b_ffn
    vg = vocab_group(strategy, tpa, kvp, dp, tpf, ep)
    lm_elems = model.vocab_size * H / vg
    t["embedding_lm_head"] = op_time_s(lm_elems * b_attn, 2 * B_loc * lm_elems, hw, cc, launches=2) + 0 * B
    reads["lm_head"] = lm_elems * b_attn + 0 * B
    if hw.step_overhead_s:  # once per step, whatever the layout (zeros otherwise, as allocated above)
        t["step_overhead"] = np.full(t["step_overhead"].shape, float(hw.step_overhead_s))

    # ---- collectives
    comm_total = {}
    for name, m in msgs.items():
        # the hot expert rank receives imbalance x the mean rows of the DP+EP dispatch and combine
        hot = expert_imbalance if name in ("moe_dispatch_all_to_all", "moe_combine_all_to_all") else 1.0
        comm_total[name] = m.calls_per_step * collectives.collective_s(m.kind, hot * m.n_bytes, m.group_size, hw)
    comm_exposed = dict(comm_total)

    mode = DEFAULT_OVERLAP[strategy] if overlap == "auto" else overlap
    phase = PIPELINED_PHASE[strategy]
    if mode == "pipelined" and phase is not None:
        m = msgs[phase]
        with_o = phase == "o_projection_all_reduce"
        # Attention is linear in the requests it serves (no launch inside), and the all-to-all is
        # alpha + beta * bytes, so each chunk count costs a few array operations.
        attn_per_row = attention_chunk(1.0) - hw.kernel_launch_s
        bytes_per_row = m.n_bytes / np.maximum(B_loc, 1.0)
        if m.kind == "all_to_all":
            alpha, beta = collectives.all_to_all_alpha_beta(m.group_size, hw)

            def comm_of(rows):
                return alpha + beta * (rows * bytes_per_row)
        else:
            def comm_of(rows):
                return collectives.collective_s(m.kind, rows * bytes_per_row, m.group_size, hw)

        # Each chunk's partial outputs are merged once its exchange lands: one combine launch per
        # chunk, on the compute path (the combine's bytes stay in t["combine"], charged once).
        merge_launch = (np.where(kvp > 1, hw.kernel_launch_s, 0.0) if phase in COMBINE_PHASE.values()
                        else 0.0)

        def chunk_times(c):
            rows = ceil_div(batch, c * dp).astype(np.float64)
            a = rows * attn_per_row + hw.kernel_launch_s + merge_launch + (o_proj_chunk(rows) if with_o else 0.0)
            return a, comm_of(rows)

        eta = float(hw.comm_overlap_efficiency)
        total = (best_chunked_s(chunk_times, B_loc, eta) if hopb_chunks is None
                 else chunked_s(chunk_times, B_loc, int(hopb_chunks), eta))
        unchunked = attention_chunk(B_loc) + merge_launch + (o_proj_chunk(B_loc) if with_o else 0.0)
        comm_exposed[phase] = traversed * np.maximum(total - unchunked, 0.0)

    breakdown = {k: v for k, v in t.items()}
    breakdown.update({k: np.broadcast_to(v, t["attention"].shape) for k, v in comm_exposed.items()})
    ttl = sum(breakdown.values())

    w = memory.weight_bytes_per_gpu(model, precision, strategy, tpa, kvp, dp, tpf, ep, pp)
    kv = memory.kv_bytes_per_gpu(model, precision, tpa, kvp, dp, pp, batch, S)
    feasible, code = memory.feasibility(w, kv, hw, batch, dp)
    num_gpus = tpa * kvp * dp * pp
    return StepResult(
        ttl_s=ttl,
        tokens_per_s_per_user=1.0 / ttl,
        tokens_per_s_per_gpu=B * pp / (ttl * num_gpus),
        memory_per_gpu_bytes=w + kv,
        weight_bytes_per_gpu=w + 0 * B,
        kv_bytes_per_gpu=kv,
        num_gpus=num_gpus + 0 * batch,
        feasible=feasible,
        reason_code=code,
        breakdown=breakdown,
        comm_total_s=comm_total,
        comm_exposed_s=comm_exposed,
        hbm_read_bytes_per_gpu=reads,
    )


def simulate(model, hw, layout: Layout, batch_size: int, context_tokens: int, precision: PrecisionSpec | None = None,
             overlap: str = "auto", expert_imbalance: float = 1.0, hopb_chunks: int | None = None) -> StepResult:
    """One configuration: validates the layout against the model, then runs ``evaluate`` on scalars."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise HelixInputError("batch_size", f"must be an integer >= 1, got {batch_size!r}")
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int | np.integer) or context_tokens < 1:
        raise HelixInputError("context_tokens", f"must be an integer >= 1, got {context_tokens!r}")
    check_layout_for_model(layout, model)
    return evaluate(model, hw, precision or PrecisionSpec(), layout.strategy, layout.tpa, layout.kvp, layout.dp,
                    layout.tpf, layout.ep, layout.pp, batch_size, context_tokens, overlap=overlap,
                    expert_imbalance=expert_imbalance, hopb_chunks=hopb_chunks)
