"""Per-table quantities of the perf-DB fit: bytes, FLOPs and features of every measured row (through
helix.cost.kernels, the functions the simulator's op inventory uses), the peak each table runs at,
and the knot spacing and smoothness of its correction.

Knots: evenly spaced in log2 from the smallest to the largest value of the axis in the table, about
one per ``spacing`` octaves. Kernel efficiency changes on the scale of an octave or two (tile and
wave quantisation, split-K and kernel switches, the L2 cache), so the axes that carry most of it
(tokens of a GEMM, the KV length and batch of attention, the message size of a collective) get one
knot per 1-1.5 octaves and the axes along which time is close to the roofline's scaling get one per
2-3 octaves. That keeps every grid at or under ~400 coefficients, each determined by tens of rows.

Smoothness: the second-difference penalty weight, relative to the data term per coefficient (see
helix.validation.perf_db.fit.fit_correction). 0.05 lets the grid follow the measured kinks while
bridging knots no row reaches linearly in log-log; held-out errors are flat within about +-1 % for
weights between 0.01 and 0.3, so the choice is not delicate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helix.cost import kernels
from helix.validation.perf_db.fit import EACH_VALUE

# The simulator's presets [src/helix/specs/presets/hardware/{gb200-nvl72,b200,h200,h100}.yaml]:
# HBM bytes/s and dense peak FLOP/s per compute class (Hopper has no FP4: its FP8 rate).
HARDWARE = {
    "gb200-nvl72": {"system": "gb200", "hbm": 8.0e12, "bf16": 2.5e15, "fp8": 5.0e15, "fp4": 10.0e15},
    "b200": {"system": "b200_sxm", "hbm": 8.0e12, "bf16": 2.25e15, "fp8": 4.5e15, "fp4": 9.0e15},
    "h200": {"system": "h200_sxm", "hbm": 4.8e12, "bf16": 0.989e15, "fp8": 1.979e15, "fp4": 1.979e15},
    "h100": {"system": "h100_sxm", "hbm": 3.35e12, "bf16": 0.989e15, "fp8": 1.979e15, "fp4": 1.979e15},
}
ENGINES = ("trtllm", "sglang")

# The routing the MoE tables are read at: tokens drawn over experts by a power law of exponent 1.01,
# aiconfigurator's own default for DeepSeek-family decode (sdk/config.py workload_distribution
# "power_law", sdk/models/deepseek.py _power_law_alpha = 1.01 in aiconfigurator-core 0.12.0). Live
# routing is skewed: at small batches fewer experts are touched than uniform routing touches, at large
# ones the hottest expert sets the time. One choice for every table, engine and GPU, never per point;
# the one exception is by configuration, not by point: EPLB, next.
MOE_ROUTING = "power_law_1.01"
# With EPLB (redundant expert slots, replicas of the hot experts) the tables are read at balanced routing
# ("balanced" in the MoE tables, "uniform" in SGLang's DeepEP table). aiconfigurator measures EPLB itself
# only in TensorRT-LLM's wide-EP table (power_law_1.01 with and without _eplb; rank0_num_tokens = tokens
# the hottest rank receives, counted once however many of its experts they hit). H200, DeepSeek shape,
# rows of >= 64 pairs per rank, median hottest-rank tokens / mean pairs per rank at EP 32: 0.93 with EPLB
# over 288 slots (256 + 32, DeepSeek's), 1.94 without; balanced routing at EP 16 reads 0.85 on this count.
EPLB_ROUTING = {"moe": "balanced", "moe_deepep": "uniform"}
DEFAULT_SMOOTHNESS = 0.05
# Grouped-GEMM MoE time is not smooth in the token count: the autotuner switches tactic between
# neighbouring measured counts (DeepSeek shape, EP8, NVFP4 on GB200: 162 us at 128 tokens, 233 at 160,
# 157 at 320), so the token axis gets a knot at every measured count (a table lookup along it). The
# global expert count and top-k are axes of their own (the kernels tile by both, not only by the local
# expert count); smoothness 0.1 (tried 0.01, 0.1, 1 on the held-out rows of GB200 and H200: 0.1 is the
# best p90 on most tables, within a point of the best median on all).
MOE_TOKEN_KNOTS = (1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048,
                   3072, 4096, 6144, 8192, 12288, 16384)
MOE_SMOOTHNESS = 0.1
# The hidden size, top-k and expert count name a model's MoE shape, and engines tune their kernels per
# shape (SGLang's Triton fused-MoE keeps one config per expert count and width; an untuned shape such as
# hidden 2816 / 128 experts runs 5-8x below its neighbours on GB200 in BF16), so those axes get a knot at
# every measured value: each shape its own correction, a shape in between (DeepSeek's hidden 7168, between
# 6144 and 8192) interpolated. Knots every 1.5 octaves on hidden and at (8,) on top-k / (256,) on experts
# gave held-out p90 30-40 % on the SGLang B200/GB200 tables; knots at every value, 20-24 %.
MOE_SHAPE_KNOTS = (MOE_TOKEN_KNOTS, 1.0, 1.0, EACH_VALUE, EACH_VALUE, EACH_VALUE)
MOE_NOTE = ("rows of fine-grained MoE only (topk >= 4, num_experts >= 64: DeepSeek-V3/R1, Qwen3, GPT-OSS shapes); "
            "knots at every measured token count, hidden size, top-k and expert count")
# GQA decode attention: a knot every 2 octaves of batch and KV length, and one at every measured head
# count (query and KV heads: the kernels tile by heads per KV group, so time is not smooth across them),
# smoothness 0.02. Chosen on the training rows only (the held-out rows dropped, one in five of the rest
# held out by another hash) among knots every 1.5 / 2 / 3 octaves, heads at (8, 32, 64) / (2, 4, 8) or at
# every value, smoothness 0.005-0.05: the worst table's inner p90 went 25.6 % -> 17.7 %.
ATTENTION_KNOTS = (2.0, 2.0, EACH_VALUE, EACH_VALUE)
ATTENTION_SMOOTHNESS = 0.02
# Collective tables hold about one row per octave of message size: a knot per octave leaves the node of a
# held-out row with no data of its own, so one knot per 2 octaves (NCCL all-reduce on HGX: held-out
# medians 10.5-12.4 % -> 4.5-5.5 %; no NCCL or MoE all-to-all table got worse than 10 % / 20 % median/p90)
COLLECTIVE_BYTES_SPACING = 2.0
_DTYPE = {"bf16": "bfloat16", "fp8": "fp8", "fp8_block": "fp8_block", "nvfp4": "nvfp4"}
_WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp8_block": 1.0, "nvfp4": 4.5 / 8}
_PEAK = {"bf16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4"}


@dataclass(frozen=True)
class TableSpec:
    """One fitted form: its key in the OpModel, the reader in tables.py and its arguments, the
    correction axes with their knot spacing (octaves per knot), and the collective kind (None for an op)."""

    name: str
    reader: str
    args: tuple
    axes: tuple[str, ...]
    spacing: tuple[float, ...]
    smoothness: float = DEFAULT_SMOOTHNESS
    tension: float = 0.0
    collective_kind: str | None = None
    note: str = ""


def table_specs() -> list[TableSpec]:
    specs = []
    for d in ("bf16", "fp8", "fp8_block", "nvfp4"):
        specs.append(TableSpec(f"gemm.{d}", "gemm", (_DTYPE[d],), ("tokens", "n", "k"), (1.25, 2.0, 2.0)))
    for d in ("bf16", "fp8"):
        specs.append(TableSpec(f"attention.{d}", "attention", (_DTYPE[d],),
                               ("batch", "kv_tokens", "q_heads", "kv_heads"), ATTENTION_KNOTS, ATTENTION_SMOOTHNESS))
    for d in ("bf16", "fp8"):
        specs.append(TableSpec(f"mla.{d}", "mla", (_DTYPE[d],), ("batch", "kv_tokens", "heads"), (1.0, 1.0, 1.0)))
    for op in ("pre", "post"):
        for d in ("bf16", "fp8"):
            specs.append(TableSpec(f"mla_bmm_{op}.{d}", "mla_bmm", (f"mla_gen_{op}", _DTYPE[d]),
                                   ("tokens", "heads"), (1.0, 1.0)))
    moe_axes = ("tokens", "local_experts", "expert_width", "hidden", "topk", "experts")
    deepep_note = ("DP attention + DeepEP MoE (SGLang); DeepSeek-V3 shape only: the simulator's dp_ep layouts read "
                   "it, other shapes keep the ratio it measures")
    for suffix, routing in (("", MOE_ROUTING), ("_eplb", None)):
        eplb = "; balanced routing, read with EPLB (redundant experts)" if routing is None else ""
        for d in ("bf16", "fp8", "fp8_block", "nvfp4"):
            specs.append(TableSpec(f"moe{suffix}.{d}", "moe", (_DTYPE[d], routing or EPLB_ROUTING["moe"]),
                                   moe_axes, MOE_SHAPE_KNOTS, MOE_SMOOTHNESS, note=MOE_NOTE + eplb))
        specs.append(TableSpec(f"moe_deepep{suffix}.fp8_block", "moe_deepep",
                               ("fp8_block", routing or EPLB_ROUTING["moe_deepep"]),
                               moe_axes, MOE_SHAPE_KNOTS, MOE_SMOOTHNESS, note=deepep_note + eplb))
    specs.append(TableSpec("elementwise", "elementwise", (), ("rows", "width"), (1.0, 1.0),
                           note="times every elementwise op of the inventory (norms, RoPE, KV write, SwiGLU, "
                                "top-k gating, LSE combine, sampling) as this one fused BF16 -> FP8 kernel"))
    for name, op in (("all_reduce", "all_reduce"), ("all_gather", "all_gather"),
                     ("reduce_scatter", "reduce_scatter"), ("all_to_all", "alltoall")):
        specs.append(TableSpec(name, "nccl", (op,), ("group", "bytes"), (1.0, COLLECTIVE_BYTES_SPACING),
                               collective_kind="all_reduce" if name == "all_reduce" else "all_to_all"))
    specs.append(TableSpec("custom_all_reduce", "custom_all_reduce", (), ("group", "bytes"), (1.0, 1.0),
                           collective_kind="all_reduce"))
    for phase in ("dispatch", "combine"):
        specs.append(TableSpec(f"moe_{phase}", "moe_all_to_all", (phase,), ("group", "bytes", "experts"),
                               (1.0, COLLECTIVE_BYTES_SPACING, 1.0), collective_kind="all_to_all",
                               note="experts axis: the low-latency kernels signal every expert, so a small "
                                    "message costs more with more experts (B200 SGLang, 1-8 tokens: 17 us at "
                                    "128 experts, 21 at 256, 25 at 384)"))
    return specs


def _dtype_key(spec: TableSpec) -> str:
    return spec.name.split(".", 1)[1] if "." in spec.name else "bf16"


def op_quantities(spec: TableSpec, c: dict, hw: dict):
    """(bytes, flops, features, peak FLOP/s) of every row of an op table."""
    d = _dtype_key(spec)
    if spec.reader == "gemm":
        m, n, k = c["m"], c["n"], c["k"]
        wb = _WEIGHT_BYTES[d]
        return (kernels.gemm_bytes(m, n, k, wb), kernels.gemm_flops(m, n, k), kernels.gemm_features(m, n, k),
                hw[_PEAK[d]])
    if spec.reader == "attention":
        b, s, q, kv = c["batch_size"], c["kv_tokens"], c["num_heads"], c["num_key_value_heads"]
        hd, kvb = kernels.GQA_TABLE_HEAD_DIM, _WEIGHT_BYTES[d]
        return (kernels.gqa_decode_bytes(b, s, kv, hd, kvb), kernels.gqa_decode_flops(b, s, q, hd),
                kernels.gqa_decode_features(b, s, q, kv), hw["bf16"])
    if spec.reader == "mla":
        b, s, h = c["batch_size"], c["kv_tokens"], c["num_heads"]
        lat, rope = kernels.MLA_LATENT_DIM, kernels.MLA_ROPE_DIM
        return (kernels.mla_decode_bytes(b, s, lat, rope, _WEIGHT_BYTES[d]),
                kernels.mla_decode_flops(b, s, h, lat, rope), kernels.mla_decode_features(b, s, h), hw["bf16"])
    if spec.reader == "mla_bmm":
        t, h = c["num_tokens"], c["num_heads"]
        nope, lat = kernels.MLA_NOPE_DIM, kernels.MLA_LATENT_DIM
        return (kernels.mla_bmm_bytes(t, h, nope, lat, _WEIGHT_BYTES[d]), kernels.mla_bmm_flops(t, h, nope, lat),
                kernels.mla_bmm_features(t, h), hw[_PEAK[d]])
    if spec.reader in ("moe", "moe_deepep"):
        return _moe_quantities(c, d, hw)
    if spec.reader == "elementwise":
        m, k = c["m"], c["k"]
        return (kernels.elementwise_bytes(m, k, 2.0, 1.0), np.zeros(m.shape), kernels.elementwise_features(m, k),
                hw["bf16"])
    raise ValueError(f"no op quantities for reader {spec.reader!r}")


def _moe_quantities(c: dict, d: str, hw: dict):
    tokens, hidden, topk, experts = c["num_tokens"], c["hidden_size"], c["topk"], c["num_experts"]
    ep, tp = c["moe_ep_size"], c["moe_tp_size"]
    local = experts / ep
    width = c["inter_size"] / tp
    touched = kernels.experts_touched(local, tokens, topk, experts)
    pairs = tokens * topk / ep
    return (kernels.moe_bytes(touched, hidden, width, _WEIGHT_BYTES[d], pairs), kernels.moe_flops(pairs, hidden, width),
            kernels.moe_features(tokens, local, width, hidden, topk, experts), hw[_PEAK[d]])


def key_columns(c: dict) -> list[np.ndarray]:
    """The shape columns of a row set, in name order (the held-out hash reads these)."""
    return [np.asarray(c[name]) for name in sorted(c)]
