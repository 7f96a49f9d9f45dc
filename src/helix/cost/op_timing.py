"""Time of one inventory op on one GPU.

With a fitted op model (``hw.op_model``, from measured kernel tables) the op's table and format pick
a form of helix.cost.optime, evaluated on the op's bytes, FLOPs and shape. Without one (the ``ideal``
preset, user profiles, a CPU profile from ``helix calibrate``) it is the plain roofline
``max(read_bytes / (eta_mem MemBW), FLOPs / (eta_flop peak)) + launches x t_launch`` on the paper's
App. A accounting (helix.cost.ops).
"""

from __future__ import annotations

import numpy as np

from helix.cost.formats import COMPUTE_CLASS
from helix.cost.op_types import Op
from helix.cost.ops import op_time_s
from helix.cost.optime import GEMM_TABLE

# A storage format -> the dtype suffix of the attention / MoE / BMM tables (FP4 KV is not measured:
# its form falls back to FP8's, at FP4's bytes, see helix.cost.optime.FALLBACK).
_KV_KEY = {"bf16": "bf16", "fp16": "bf16", "fp32": "bf16", "fp8": "fp8", "mxfp8": "fp8", "fp8_block": "fp8",
           "fp4": "fp4", "nvfp4": "fp4", "mxfp4": "fp4"}
_MOE_KEY = {"bf16": "bf16", "fp16": "bf16", "fp32": "bf16", "fp8": "fp8", "mxfp8": "fp8_block",
            "fp8_block": "fp8_block", "fp4": "nvfp4", "nvfp4": "nvfp4", "mxfp4": "nvfp4"}
_BMM_KEY = {k: ("bf16" if v == "bf16" else "fp8") for k, v in _KV_KEY.items()}


def table_key(op: Op) -> str:
    """The fitted form an op reads: its table family and the dtype its format maps to."""
    if op.table == "gemm":
        return GEMM_TABLE[op.fmt]
    if op.table in ("attention", "mla"):
        return f"{op.table}.{_KV_KEY[op.fmt]}"
    if op.table in ("moe", "moe_deepep", "moe_eplb", "moe_deepep_eplb"):
        return f"{op.table}.{_MOE_KEY[op.fmt]}"
    if op.table in ("mla_bmm_pre", "mla_bmm_post"):
        return f"{op.table}.{_BMM_KEY[op.fmt]}"
    return op.table


def time_s(op: Op, hw):
    """Seconds per call of ``op`` on ``hw`` (0 where the op is inactive)."""
    cc = COMPUTE_CLASS[op.compute_fmt]
    if hw.op_model is None:
        t = op_time_s(op.read_bytes, op.flops, hw, cc, launches=op.fallback_launches)
    else:
        form = hw.op_model.form(table_key(op))
        t = form.time_s(op.bytes, op.flops, hw.hbm_bytes_per_s, hw.peak_flops_per_s(cc), op.features)
    if op.active is True:
        return t
    return np.where(op.active, t, 0.0)
