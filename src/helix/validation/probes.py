"""Compute probes on one thread (torch worker code): streaming read, decode GEMV, the runtime's decode
attention, matmul FLOP/s and the fixed cost of one eager op.

One simulator "GPU" is one runtime rank, and on CPU a rank is one process on one torch thread, so every
number here is measured with ``torch.set_num_threads(1)`` (``one_thread``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from helix.runtime.attention import local_attention
from helix.validation.measurement import MIB, Measurement
from helix.validation.runtime_probe import RUNTIME_PROBE_LAYERS, measure_runtime_step
from helix.validation.timing import robust_median_s, time_call_s

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ComputePlan:
    """Sizes for the single-rank measurements (``quick`` shrinks them for tests)."""

    stream_bytes: tuple[int, ...] = (128 * MIB, 256 * MIB)
    attention_kv_bytes: tuple[int, ...] = (32 * MIB, 128 * MIB, 512 * MIB)  # S = 4K, 16K, 64K at B = 4
    gemv_weight_bytes: int = 128 * MIB
    gemv_rows: tuple[int, ...] = (1, 4, 16)
    matmul_sizes: dict[str, int] = field(default_factory=lambda: {"small": 128, "medium": 512, "large": 1024})
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    repeats: int = 7

    @classmethod
    def quick(cls) -> ComputePlan:
        return cls(stream_bytes=(4 * MIB,), attention_kv_bytes=(1 * MIB, 4 * MIB), gemv_weight_bytes=4 * MIB,
                   gemv_rows=(1,), matmul_sizes={"small": 64, "large": 128}, dtypes=("fp32",), repeats=3)


@contextmanager
def one_thread():
    """torch on one thread inside (a rank is a core), the caller's thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure_stream_read(n_bytes: int, repeats: int) -> Measurement:
    x = torch.ones(n_bytes // 4, dtype=torch.float32)
    med = robust_median_s(time_call_s(lambda: x.sum(), repeats=repeats))
    return Measurement("stream_read", "fp32", f"{n_bytes / MIB:g} MiB", n_bytes, 0.0, 1, med, n_bytes / med, repeats)


def measure_gemv(weight_bytes: int, rows: int, repeats: int) -> Measurement:
    """Decode-shaped matmul: a few rows against a weight matrix beyond the cache (read-bound)."""
    k = 4096
    n = weight_bytes // (4 * k)
    w = torch.randn(n, k, dtype=torch.float32)
    x = torch.randn(rows, k, dtype=torch.float32)
    med = robust_median_s(time_call_s(lambda: torch.nn.functional.linear(x, w), repeats=repeats))
    nb = float(w.numel() * 4 + x.numel() * 4 + rows * n * 4)
    return Measurement("gemv", "fp32", f"{rows}x{k}x{n}", nb, 2.0 * rows * n * k, 1, med, nb / med, repeats)


def measure_decode_attention(kv_bytes: int, repeats: int) -> Measurement:
    """The runtime's own GQA decode attention (``helix.runtime.attention.local_attention``: QK^T,
    causal mask, LSE, PV, fp32, split-KV blocks) over a KV cache beyond the cache.

    Shapes: B = 4, K = 4 KV heads, g = 2 query heads per KV head, Hsz = 64; bytes = K + V read.
    """
    b, kh, g, hsz = 4, 4, 2, 64
    s = kv_bytes // (2 * b * kh * hsz * 4)
    k, v = torch.randn(b, kh, s, hsz), torch.randn(b, kh, s, hsz)
    q = torch.randn(b, 1, kh * g, hsz)
    q_pos, k_pos = torch.tensor([s]), torch.arange(s)
    med = robust_median_s(time_call_s(lambda: local_attention(q, k, v, q_pos, k_pos, hsz**-0.5), repeats=repeats))
    nb = float(2 * b * kh * s * hsz * 4)
    return Measurement("decode_attention", "fp32", f"B={b} K={kh} g={g} Hsz={hsz} S={s}", nb,
                       4.0 * b * kh * g * s * hsz, 1, med, nb / med, repeats)


def measure_matmul(dtype: str, size: int, size_class: str, repeats: int) -> Measurement:
    a = torch.randn(size, size).to(DTYPES[dtype])
    b = torch.randn(size, size).to(DTYPES[dtype])
    med = robust_median_s(time_call_s(lambda: a @ b, repeats=repeats, warmup=1))
    flops = 2.0 * size**3
    return Measurement("matmul", dtype, f"{size_class} {size}^3", 3.0 * size * size * a.element_size(), flops, 1,
                       med, flops / med, repeats)


def measure_launch(repeats: int) -> Measurement:
    """Fixed cost of one eager op: a 1-element add, averaged over 2000 calls per sample."""
    a, b = torch.ones(1), torch.ones(1)
    med = robust_median_s(time_call_s(lambda: torch.add(a, b), repeats=repeats, inner=2000))
    return Measurement("launch", "fp32", "1 element add", 12.0, 1.0, 1, med, 0.0, repeats)


def reference_attention_rate(kv_bytes: int = 128 * MIB, repeats: int = 5) -> float:
    """Bytes/s of the runtime's decode attention over ``kv_bytes`` of K+V, one thread, in this process
    (the probe ``hbm_efficiency`` is fitted on): a reading of the machine's speed now."""
    with one_thread():
        return measure_decode_attention(kv_bytes, repeats).rate


def measure_drifting_rates(plan: ComputePlan) -> list[Measurement]:
    """The numbers a shared machine moves most (memory bandwidth through streaming and attention, the
    runtime's fixed costs), one thread: calibrate takes them at its start and again at its end, and
    ``pool_rounds`` keeps the median of the rounds (a 90 s trace of this box's attention rate swung
    between 3.7 and 9.9 GB/s, in windows of 2-10 s)."""
    with one_thread():
        out = [measure_runtime_step(n, 60 if plan.repeats > 3 else 5) for n in RUNTIME_PROBE_LAYERS]
        out += [measure_stream_read(n, plan.repeats) for n in plan.stream_bytes]
        out += [measure_decode_attention(n, plan.repeats) for n in plan.attention_kv_bytes]
    return out


def measure_local(plan: ComputePlan) -> list[Measurement]:
    """Every single-rank probe, one thread: the launch, the drifting rates, GEMVs, matmuls per dtype."""
    with one_thread():
        out = [measure_launch(plan.repeats)] + measure_drifting_rates(plan)
        out += [measure_gemv(plan.gemv_weight_bytes, r, plan.repeats) for r in plan.gemv_rows]
        out += [measure_matmul(dtype, size, name, plan.repeats) for dtype in plan.dtypes
                for name, size in plan.matmul_sizes.items()]
    return out
