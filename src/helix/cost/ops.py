"""Roofline time of one op: max(bytes / (eta_mem * MemBW), FLOPs / (eta_flop * peak)) + launches * t_launch.

With every efficiency 1 and no launch cost (the ``ideal`` preset) this is the paper's App. A
roofline exactly. References: paper App. A; the factors' sources are in the hardware presets
(tags listed in docs/sources.md).
"""

from __future__ import annotations

import numpy as np


def ceil_div(a, b):
    """Integer ceiling division on ints or int arrays (no float rounding)."""
    return -(-np.asarray(a) // np.asarray(b))


def memory_time_s(bytes_read, hw):
    """Seconds to stream ``bytes_read`` from HBM at the achieved bandwidth."""
    return np.asarray(bytes_read, dtype=np.float64) / (hw.hbm_efficiency * hw.hbm_bytes_per_s)


def compute_time_s(flops, hw, compute_class: str):
    """Seconds for ``flops`` at the achieved tensor-core rate of ``compute_class``."""
    return np.asarray(flops, dtype=np.float64) / (hw.flop_efficiency * hw.peak_flops_per_s(compute_class))


def op_time_s(bytes_read, flops, hw, compute_class: str, launches=1):
    """Roofline time of one op (or ``launches`` fused kernels) in seconds."""
    roof = np.maximum(memory_time_s(bytes_read, hw), compute_time_s(flops, hw, compute_class))
    return roof + launches * hw.kernel_launch_s
