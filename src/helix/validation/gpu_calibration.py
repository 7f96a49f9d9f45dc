"""Single-GPU calibration (torch worker code): HBM streaming read, bf16 (and FP8) matmul FLOP/s, the
per-kernel overhead eager and inside a CUDA graph; and the profile they give, the preset's other fields
(links, collective latencies) kept with their sources."""

from __future__ import annotations

import sys
import time

import torch
import yaml

from helix.specs.hardware import PRESET_DIR
from helix.validation.gpu_timer import Timer, rotating


def _fp8_matmul_s(timer: Timer, a, b) -> float | None:
    """Seconds of the same matmul in FP8 e4m3 through torch._scaled_mm, or None where it is unavailable."""
    if timer.device != "cuda" or not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return None
    try:
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.t().contiguous().to(torch.float8_e4m3fn).t()  # column-major second operand
        one = torch.ones((), device=timer.device)
        return timer.time_s(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                            repeats=10)
    except Exception as exc:  # noqa: BLE001 - an older GPU or torch without FP8 GEMM
        print(f"fp8 matmul skipped: {exc}", file=sys.stderr)
        return None


def _graph_kernel_s(timer: Timer, a, b) -> float:
    """Per-kernel time of 200 one-element adds replayed from one CUDA graph."""
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.add(a, b)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        for _ in range(200):
            torch.add(a, b)
    return timer.time_s(graph.replay, repeats=5, inner=5) / 200


def calibrate_device(timer: Timer, smoke: bool) -> dict[str, float]:
    """Measured ceilings of this device (``smoke``: tiny sizes, numbers that mean nothing)."""
    dev, repeats = timer.device, 5 if smoke else 10
    out: dict[str, float] = {}
    sizes = (8 << 20,) if smoke else (1 << 30, 4 << 30)
    out["stream_read_bytes_per_s"] = max(
        n / timer.time_s(rotating(torch.sum, [(torch.ones(n // 4, device=dev),)]), repeats=repeats) for n in sizes)
    m = 256 if smoke else 8192
    a = torch.randn(m, m, device=dev).to(torch.bfloat16)
    b = torch.randn(m, m, device=dev).to(torch.bfloat16)
    out["bf16_matmul_flops_per_s"] = 2 * m**3 / timer.time_s(rotating(torch.matmul, [(a, b)]), repeats=repeats)
    out["bf16_matmul_size"] = m
    fp8_s = _fp8_matmul_s(timer, a, b)
    if fp8_s is not None:
        out["fp8_matmul_flops_per_s"] = 2 * m**3 / fp8_s
    del a, b
    tiny_a, tiny_b = torch.ones(1, device=dev), torch.ones(1, device=dev)
    out["eager_kernel_s"] = timer.time_s(lambda: torch.add(tiny_a, tiny_b), repeats=5, inner=1000)
    if dev == "cuda":
        out["graph_kernel_s"] = _graph_kernel_s(timer, tiny_a, tiny_b)
    return out


def profile_mapping(cal: dict[str, float], preset_name: str, device_name: str, capacity_bytes: float) -> dict:
    """Preset fields with the measured ceilings swapped in (efficiencies 1: the values are achieved)."""
    preset = yaml.safe_load((PRESET_DIR / f"{preset_name}.yaml").read_text())
    date = time.strftime("%Y-%m-%d")
    how = f"MEASURED by helix gpu-check on {device_name}, {date}"

    def e(value, source):
        return {"value": float(f"{value:.4g}"), "source": f"{how}: {source}", "empirical": True}

    prof = dict(preset)
    prof["name"] = f"{preset_name}-measured"
    prof["description"] = f"{device_name}: measured single-GPU ceilings ({date}); links and latencies from " \
                          f"preset {preset_name!r}"
    prof["peak_flops_per_s_bf16"] = e(cal["bf16_matmul_flops_per_s"],
                                      f"bf16 {cal['bf16_matmul_size']:.0f}^3 matmul, CUDA events, median")
    if "fp8_matmul_flops_per_s" in cal:
        prof["peak_flops_per_s_fp8"] = e(cal["fp8_matmul_flops_per_s"], "fp8 e4m3 torch._scaled_mm, same size")
    prof["hbm_bytes_per_s"] = e(cal["stream_read_bytes_per_s"], "fp32 tensor.sum() over 1 and 4 GB, best")
    prof["hbm_capacity_bytes"] = e(capacity_bytes, "torch.cuda.get_device_properties().total_memory")
    prof["hbm_efficiency"] = e(1.0, "hbm_bytes_per_s already holds the achieved streaming rate")
    prof["flop_efficiency"] = e(1.0, "the peak slots already hold achieved GEMM rates")
    kernel = cal.get("graph_kernel_s", cal["eager_kernel_s"])
    prof["kernel_launch_s"] = e(kernel, f"1-element add inside a CUDA graph, per kernel (eager back-to-back: "
                                        f"{cal['eager_kernel_s'] * 1e6:.2f} us)")
    return prof
