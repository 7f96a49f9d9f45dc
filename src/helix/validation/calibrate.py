"""Measure the machine this runs on and write a hardware profile the simulator accepts.

One simulator "GPU" is one runtime rank. On CPU a rank is one process pinned to one torch thread
(the runtime's timed points run one process per core), so every compute number here is measured
with ``torch.set_num_threads(1)``:

- memory bandwidth: streaming read (``tensor.sum()``) of fp32 buffers well beyond the last-level
  cache, alone and with every rank streaming at once (ranks share the memory controllers; the
  slowest rank's rate, since a step waits for it);
- decode attention bandwidth: the runtime's own GQA decode attention
  (``helix.runtime.attention.local_attention``) over KV caches of 32-512 MiB; the slope of time vs
  bytes over the streaming rate is the achieved-bandwidth factor (``hbm_efficiency``, as the GPU
  presets take it from an attention kernel); decode GEMVs ``x[B, K] @ W[K, N]`` are recorded beside it;
- matmul FLOP/s per dtype (fp32, bf16) and size class (small, medium, large square GEMMs);
- the runtime's own fixed costs (``kernel_launch_s``, ``step_overhead_s``): decode steps of a minimal
  Llama (helix.runtime.llama, B = 1, an 8-token context, so every op is pure overhead) with 1 and 4
  layers; the slope per layer / the launches the simulator charges per layer is the fixed cost of
  one modelled op in this stack (eager PyTorch: ~10 aten ops per modelled op), the intercept less the
  simulator's embedding + LM-head launches is the per-step overhead (embedding, RoPE, KV slot
  bookkeeping, final norm, argmax, Python). The main profile runs it as Helix KVP = N on all N ranks
  at once (the multi-rank code path: packing, the combine, collective wrappers; time inside the
  collectives taken out), the single-rank profile on one rank alone. A 1-element ``torch.add`` is
  recorded beside it;
- collectives on the backend in use (gloo on CPU): all-reduce, all-gather, all-to-all over message
  sizes and every group size with a core per rank, each call timed as a decode step meets it (after
  ~1 ms of compute, process groups used in turn: gloo's worker threads sleep between phases, and a
  back-to-back loop would time a hot path 2-5x faster than any decode step sees), from the moment the
  last rank arrives to the last exit (ranks' clocks are the host's monotonic clock; the wait of the
  ranks that arrive first is compute imbalance, recorded as ``collective_wait``), fitted jointly to the
  simulator's alpha-beta forms (helix.validation.fit.fit_collectives); gloo runs the all-reduce as a
  ring only, so the profile says ``all_reduce_algorithms: [ring]``.
- compute-communication overlap (``comm_overlap_efficiency``): on the same gloo ranks, an
  ``all_to_all_single(async_op=True)`` and a decode-attention einsum sized to take about as long,
  timed alone and issued together (all-to-all, attention, wait); per repetition
  eta = (t_a2a + t_attn - t_both) / min(t_a2a, t_attn) on the means over ranks, clipped to [0, 1],
  the median over repetitions and two message sizes (helix.cost.overlap uses it for HOP-B).

The runtime computes in fp32, which the simulator maps to its ``bf16`` compute class: the measured
fp32 rate is stored in ``peak_flops_per_s_bf16`` (its source says so); FP8/FP4 are 0 (fall back).
Every measured number carries ``source:`` (what was timed, how) and ``empirical: true``.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helix.outputs import write_atomic as write_atomic  # the one shared copy (re-exported)
from helix.validation import fit

KIB, MIB = 1024, 1024 * 1024


# ---------------------------------------------------------------- timing


def time_call_s(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 2, inner: int = 1,
                sync: Callable[[], object] | None = None) -> list[float]:
    """Per-call seconds of ``fn``: ``repeats`` samples, each the mean of ``inner`` back-to-back calls."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if sync:
            sync()
        samples.append((time.perf_counter() - t0) / inner)
    return samples


@dataclass
class Measurement:
    """One measured quantity: what, its size parameters, the median time and the derived rate."""

    what: str  # stream_read | gemv | matmul | launch | all_reduce | all_gather | all_to_all
    dtype: str
    size: str  # human label (bytes, MxNxK, ...)
    n_bytes: float  # bytes read or message bytes (simulator convention)
    flops: float
    group_size: int
    median_s: float
    rate: float  # bytes/s or FLOP/s where meaningful, else 0
    samples: int

    def row(self) -> dict:
        return {"what": self.what, "dtype": self.dtype, "size": self.size, "n_bytes": self.n_bytes,
                "flops": self.flops, "group_size": self.group_size, "median_s": self.median_s,
                "rate": self.rate, "samples": self.samples}


# ---------------------------------------------------------------- local compute (one thread)


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
                   gemv_rows=(1,),
                   matmul_sizes={"small": 64, "large": 128}, dtypes=("fp32",), repeats=3)


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def measure_stream_read(n_bytes: int, repeats: int) -> Measurement:
    import torch

    x = torch.ones(n_bytes // 4, dtype=torch.float32)
    med = fit.robust_median_s(time_call_s(lambda: x.sum(), repeats=repeats))
    return Measurement("stream_read", "fp32", f"{n_bytes / MIB:g} MiB", n_bytes, 0.0, 1, med, n_bytes / med, repeats)


def measure_gemv(weight_bytes: int, rows: int, repeats: int) -> Measurement:
    """Decode-shaped matmul: a few rows against a weight matrix beyond the cache (read-bound)."""
    import torch

    k = 4096
    n = weight_bytes // (4 * k)
    w = torch.randn(n, k, dtype=torch.float32)
    x = torch.randn(rows, k, dtype=torch.float32)
    f = torch.nn.functional.linear
    med = fit.robust_median_s(time_call_s(lambda: f(x, w), repeats=repeats))
    nb = float(w.numel() * 4 + x.numel() * 4 + rows * n * 4)
    return Measurement("gemv", "fp32", f"{rows}x{k}x{n}", nb, 2.0 * rows * n * k, 1, med, nb / med, repeats)


def measure_decode_attention(kv_bytes: int, repeats: int) -> Measurement:
    """The runtime's own GQA decode attention (``helix.runtime.attention.local_attention``: QK^T,
    causal mask, LSE, PV, fp32, split-KV blocks) over a KV cache beyond the cache.

    Shapes: B = 4, K = 4 KV heads, g = 2 query heads per KV head, Hsz = 64; bytes = K + V read.
    """
    import torch

    from helix.runtime.attention import local_attention

    b, kh, g, hsz = 4, 4, 2, 64
    s = kv_bytes // (2 * b * kh * hsz * 4)
    k, v = torch.randn(b, kh, s, hsz), torch.randn(b, kh, s, hsz)
    q = torch.randn(b, 1, kh * g, hsz)
    q_pos, k_pos = torch.tensor([s]), torch.arange(s)
    med = fit.robust_median_s(time_call_s(lambda: local_attention(q, k, v, q_pos, k_pos, hsz**-0.5),
                                          repeats=repeats))
    nb = float(2 * b * kh * s * hsz * 4)
    return Measurement("decode_attention", "fp32", f"B={b} K={kh} g={g} Hsz={hsz} S={s}", nb,
                       4.0 * b * kh * g * s * hsz, 1, med, nb / med, repeats)


def attention_rate(rows: list[Measurement]) -> float:
    """Bytes/s of decode attention: the slope of t = c + bytes / rate over the sizes (relative least
    squares), so the fixed cost of a call (charged by ``kernel_launch_s``) is not read as bandwidth;
    one size: its own rate."""
    if len(rows) == 1:
        return rows[0].rate
    line = fit.fit_line([m.n_bytes for m in rows], [m.median_s for m in rows], relative=True)
    beta = line.coefficients["beta"]
    return 1.0 / beta if beta > 0 else max(m.rate for m in rows)


def measure_matmul(dtype: str, size: int, size_class: str, repeats: int) -> Measurement:
    import torch

    td = _torch_dtype(dtype)
    a = torch.randn(size, size).to(td)
    b = torch.randn(size, size).to(td)
    med = fit.robust_median_s(time_call_s(lambda: a @ b, repeats=repeats, warmup=1))
    flops = 2.0 * size**3
    return Measurement("matmul", dtype, f"{size_class} {size}^3", 3.0 * size * size * a.element_size(), flops, 1,
                       med, flops / med, repeats)


def measure_launch(repeats: int) -> Measurement:
    """Fixed cost of one eager op: a 1-element add, averaged over 2000 calls per sample."""
    import torch

    a, b = torch.ones(1), torch.ones(1)
    med = fit.robust_median_s(time_call_s(lambda: torch.add(a, b), repeats=repeats, inner=2000))
    return Measurement("launch", "fp32", "1 element add", 12.0, 1.0, 1, med, 0.0, repeats)


# Launches helix.step charges per layer of a dense GQA model at KVP = 1 (qkv_projection,
# attention, o_projection: 1 each; ffn: 2), one more at KVP > 1 (combine), and per step for
# embedding + LM head.
SIMULATED_LAUNCHES_PER_DENSE_LAYER = 5
SIMULATED_LAUNCHES_PER_STEP = 2
RUNTIME_PROBE_LAYERS = (1, 4)


def measure_runtime_step(layers: int, repeats: int, kvp: int = 1) -> Measurement:
    """Median decode step of a minimal Llama (H = 64, K = 4, Hsz = 8, F = 64, V = 64; Q = 8, or KVP x
    ceil(8 / KVP) so that the heads split) with ``layers`` layers, B = 1, an 8-token context: every op
    is fixed cost (launch, dispatch, Python).

    ``kvp`` = 1: one rank alone. ``kvp`` > 1: every rank of the initialised process group runs its
    shard of a Helix KVP = ``kvp`` decode, the code path of a multi-rank point (packing, the exchange's
    wrappers, the combine, vocab-parallel head); the time inside blocking collectives, which the
    simulator charges separately, is taken out of every step.
    """
    import torch

    from helix.layout import Layout
    from helix.runtime import llama
    from helix.runtime.comm import Comm
    from helix.runtime.decoder import DecodeOptions
    from helix.runtime.registry import _llama

    heads = kvp * -(-8 // kvp)
    hf = _llama(seed=0, vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=4, head_dim=8, max_position_embeddings=4096)
    arch = llama.arch_from_hf_config(hf.config)
    if kvp == 1:
        comm = Comm.create(Layout.helix(kvp=1, tpa=1), 0, 1, "env://")
    else:
        import torch.distributed as dist

        comm = Comm.create(Layout.helix(kvp=kvp, tpa=1), dist.get_rank(), kvp)  # joins the existing group
    decoder = llama.HelixLlama(arch, {k: v.detach() for k, v in hf.state_dict().items()}, comm, name="probe")
    tokens = decoder.prefill(torch.zeros(1, 8, dtype=torch.int64), DecodeOptions()).next_tokens
    samples = []
    for i in range(5 + repeats):  # as the runtime runs (helix.validation.validate: no inference mode)
        comm.collective_spans.clear()
        t0 = time.perf_counter()
        tokens = decoder.decode_step(tokens).next_tokens
        if i >= 5:
            in_collectives = sum(exit_s - entry_s for _, entry_s, exit_s in comm.collective_spans)
            samples.append(time.perf_counter() - t0 - in_collectives)
    med = fit.robust_median_s(samples)
    return Measurement("runtime_step", "fp32", f"{layers} layers B=1 S=8", 0.0, 0.0, 1, med, 0.0, repeats)


def measure_local(plan: ComputePlan) -> list[Measurement]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = [measure_launch(plan.repeats)] + measure_drifting_rates(plan)
        out += [measure_gemv(plan.gemv_weight_bytes, r, plan.repeats) for r in plan.gemv_rows]
        for dtype in plan.dtypes:
            for cls_name, size in plan.matmul_sizes.items():
                out.append(measure_matmul(dtype, size, cls_name, plan.repeats))
        return out
    finally:
        torch.set_num_threads(threads)


def measure_drifting_rates(plan: ComputePlan) -> list[Measurement]:
    """The numbers a shared machine moves most (memory bandwidth through streaming and attention, the
    runtime's fixed costs), one thread: calibrate takes them at its start and again at its end, and
    ``pool_rounds`` keeps the median of the rounds (a 90 s trace of this box's attention rate swung
    between 3.7 and 9.9 GB/s, in windows of 2-10 s)."""
    out = [measure_runtime_step(n, 60 if plan.repeats > 3 else 5) for n in RUNTIME_PROBE_LAYERS]
    out += [measure_stream_read(n, plan.repeats) for n in plan.stream_bytes]
    out += [measure_decode_attention(n, plan.repeats) for n in plan.attention_kv_bytes]
    return out


def pool_rounds(measurements: list[Measurement]) -> list[Measurement]:
    """Rows measured in several rounds (same what, dtype, size and group) pooled into one: the median
    over rounds of the time and of the rate, the samples summed; first-seen order. Pure; tested."""
    groups: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.what, m.dtype, m.size, m.group_size), []).append(m)
    out = []
    for rows in groups.values():
        first = rows[0]
        out.append(Measurement(first.what, first.dtype, first.size, first.n_bytes, first.flops, first.group_size,
                               float(np.median([m.median_s for m in rows])), float(np.median([m.rate for m in rows])),
                               sum(m.samples for m in rows)))
    return out


# ---------------------------------------------------------------- collectives (gloo, one process per rank)


@dataclass(frozen=True)
class CollectivePlan:
    message_bytes: tuple[int, ...] = tuple(4**i * 64 for i in range(10))  # 64 B .. 16 MiB
    kinds: tuple[str, ...] = fit.KINDS
    rounds: int = 32
    concurrent_stream_bytes: int = 128 * MIB
    concurrent_attention_kv_bytes: tuple[int, ...] = ComputePlan.attention_kv_bytes
    compute_between_s: float = 1e-3  # work before each call, as between the phases of a decode step
    groups: int = 3  # process groups over the same ranks, used in turn (the runtime's kvp, attention, stage)
    probe_repeats: int = 60  # decode steps of the runtime probe, every rank at once
    overlap_message_bytes: tuple[int, ...] = (4 * KIB, 256 * KIB)  # all-to-all sizes of the overlap probe
    overlap_repeats: int = 15

    @classmethod
    def quick(cls) -> CollectivePlan:
        return cls(message_bytes=(256, 65536), rounds=3, concurrent_stream_bytes=4 * MIB,
                   concurrent_attention_kv_bytes=ComputePlan.quick().attention_kv_bytes, probe_repeats=5,
                   overlap_message_bytes=(4 * KIB,), overlap_repeats=3)


def _collective_op(dist, torch, kind: str, n: int, world: int):
    """(message bytes in the simulator's convention, a call taking the process group) for one collective."""
    elems = max(n // 4, world) // world * world  # divisible by the group for all-to-all / all-gather
    if kind == "all_reduce":  # n = the full buffer
        buf = torch.ones(elems)
        return elems * 4, lambda g: dist.all_reduce(buf, group=g)
    if kind == "all_gather":  # n = the output; the list form, as helix.runtime.comm calls it
        src, dst = torch.ones(elems // world), [torch.empty(elems // world) for _ in range(world)]
        return elems * 4, lambda g: dist.all_gather(dst, src, group=g)
    src, dst = torch.ones(elems), torch.empty(elems)  # all_to_all: n = the rank's send buffer
    return elems * 4, lambda g: dist.all_to_all_single(dst, src, group=g)


def _busy(torch, seconds: float):
    """A no-argument call that keeps this core busy for about ``seconds`` with small matmuls."""
    a = torch.randn(128, 128)
    t0 = time.perf_counter()
    a @ a
    reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))

    def work():
        for _ in range(reps):
            a @ a

    return work


def overlap_efficiency(t_comm, t_compute, t_both) -> np.ndarray:
    """Per sample, the fraction of the shorter of (communication, compute) that hid when both ran at
    once: (t_comm + t_compute - t_both) / min(t_comm, t_compute), clipped to [0, 1]."""
    t_comm, t_compute, t_both = (np.asarray(x, dtype=np.float64) for x in (t_comm, t_compute, t_both))
    hidden = t_comm + t_compute - t_both
    return np.clip(hidden / np.maximum(np.minimum(t_comm, t_compute), 1e-12), 0.0, 1.0)


def _attention_op(torch, tokens: int):
    """A decode-attention einsum (as measure_decode_attention: B = 4, K = 4, g = 2, Hsz = 64, fp32)
    over ``tokens`` cached tokens: the compute HOP-B overlaps with the all-to-all."""
    b, kh, g, hsz = 4, 4, 2, 64
    k, v = torch.randn(b, kh, tokens, hsz), torch.randn(b, kh, tokens, hsz)
    q = torch.randn(b, kh, g, 1, hsz)

    def attend():
        scores = torch.einsum("bkgtd,bksd->bkgts", q, k) * hsz**-0.5
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        return torch.einsum("bkgts,bksd->bkgtd", torch.exp(scores - lse), v)

    return attend


def _measure_overlap(dist, torch, world: int, group, plan: CollectivePlan) -> list[dict]:
    """Per message size and repetition: (t_a2a, t_attention, t_both) on this rank, each after a
    barrier. The attention is sized (on rank 0, shared) to take about as long as the all-to-all alone."""
    out = []
    for n in plan.overlap_message_bytes:
        elems = max(n // 4, world) // world * world
        src, dst = torch.ones(elems), torch.empty(elems)

        def a2a_async(dst=dst, src=src):
            return dist.all_to_all_single(dst, src, group=group, async_op=True)

        for _ in range(3):  # warm-up
            a2a_async().wait()
        dist.barrier(group=group)
        t_a = []
        for _ in range(5):
            dist.barrier(group=group)
            t0 = time.perf_counter()
            a2a_async().wait()
            t_a.append(time.perf_counter() - t0)
        probe_tokens = 2048
        probe = _attention_op(torch, probe_tokens)
        probe()
        t_probe = fit.robust_median_s(time_call_s(probe, repeats=3, warmup=1))
        tokens = [int(np.clip(probe_tokens * np.median(t_a) / t_probe, 16, 262144))]
        dist.broadcast_object_list(tokens, src=0, group=group)  # the same op on every rank
        attend = _attention_op(torch, tokens[0])
        attend()
        for _ in range(plan.overlap_repeats):
            times = []
            for mode in ("comm", "compute", "both"):
                dist.barrier(group=group)
                t0 = time.perf_counter()
                if mode == "comm":
                    a2a_async().wait()
                elif mode == "compute":
                    attend()
                else:
                    work = a2a_async()
                    attend()
                    work.wait()
                times.append(time.perf_counter() - t0)
            out.append({"n_bytes": elems * 4, "tokens": tokens[0], "times": times})
    return out


def overlap_rows(everyone: list[list[dict]], world: int) -> list[Measurement]:
    """Measurements from every rank's overlap samples (means over ranks per repetition): per message
    size the median all-to-all, attention and together, and eta per size (in ``rate``); last, the
    pooled ``comm_overlap`` row whose ``rate`` is the median eta over every repetition and size."""
    t = np.mean(np.array([[s["times"] for s in per_rank] for per_rank in everyone]), axis=0)  # [samples, 3]
    sizes = np.array([s["n_bytes"] for s in everyone[0]])
    tokens = {s["n_bytes"]: s["tokens"] for s in everyone[0]}
    eta = overlap_efficiency(t[:, 0], t[:, 1], t[:, 2])
    rows = []
    for nb in dict.fromkeys(sizes.tolist()):
        sel = sizes == nb
        label = f"{nb} B a2a + attention S={tokens[nb]}"
        for what, col in (("overlap_all_to_all", 0), ("overlap_attention", 1), ("overlap_both", 2)):
            rate = float(np.median(eta[sel])) if what == "overlap_both" else 0.0
            rows.append(Measurement(what, "fp32", label, float(nb), 0.0, world, float(np.median(t[sel, col])),
                                    rate, int(sel.sum())))
    rows.append(Measurement("comm_overlap", "fp32", ", ".join(f"{nb} B" for nb in dict.fromkeys(sizes.tolist())),
                            0.0, 0.0, world, float(np.median(t[:, 2])), float(np.median(eta)), int(eta.size)))
    return rows


def collective_times_s(spans_per_rank) -> tuple[np.ndarray, float]:
    """(per call max(exit) - max(entry), the mean wait of the ranks that arrived before the last) from
    every rank's (entry, exit) per call [ranks][calls]. A collective cannot finish on any rank before
    the last one enters. Pure; tested."""
    t = np.asarray(spans_per_rank, dtype=np.float64)  # [ranks, calls, 2]
    last_in = t[:, :, 0].max(axis=0)
    return t[:, :, 1].max(axis=0) - last_in, float(np.mean(last_in[None, :] - t[:, :, 0]))


def slowest_rank_rows(rows_per_rank: list[list[dict]]) -> list[dict]:
    """Every rank's concurrent compute rows reduced to the slowest rank's: a decode step waits for its
    slowest rank. ``stream_read_all_ranks``: the lowest rate; ``runtime_step_all_ranks`` and
    ``decode_attention_all_ranks``: the longest time (per label)."""
    out = []
    for i, row in enumerate(rows_per_rank[0]):
        same = [rows[i] for rows in rows_per_rank]
        if row["what"] == "stream_read_all_ranks":
            row = min(same, key=lambda r: r["rate"])
        elif row["what"] in ("runtime_step_all_ranks", "decode_attention_all_ranks"):
            row = max(same, key=lambda r: r["median_s"])
        out.append(dict(row, size=f"{row['size']}, slowest of {len(same)} ranks"))
    return out


def _concurrent_rates(dist, torch, world: int, plan: CollectivePlan) -> list[dict]:
    """This rank's rows of the probes every rank runs at once (reduced to the slowest rank later)."""
    rows = []
    # Streaming read with every rank streaming at once: the bandwidth one rank gets under load.
    x = torch.ones(plan.concurrent_stream_bytes // 4)
    dist.barrier()
    med = fit.robust_median_s(time_call_s(x.sum, repeats=7))
    rows.append(Measurement("stream_read_all_ranks", "fp32", f"{plan.concurrent_stream_bytes / MIB:g} MiB",
                            plan.concurrent_stream_bytes, 0.0, world, med,
                            plan.concurrent_stream_bytes / med, 7).row())
    x = None
    # The runtime's decode attention on every rank at once: ranks share the last-level cache as well
    # as the memory controllers, and attention (scores, softmax) suffers more than a streaming sum.
    for n in plan.concurrent_attention_kv_bytes:
        dist.barrier()
        m = measure_decode_attention(n, 7)
        m.what, m.group_size = "decode_attention_all_ranks", world
        rows.append(m.row())
    # The runtime probe (see measure_runtime_step) as Helix KVP = world on every rank at once.
    for n in RUNTIME_PROBE_LAYERS:
        dist.barrier()
        m = measure_runtime_step(n, plan.probe_repeats, kvp=world)
        m.what, m.group_size = "runtime_step_all_ranks", world
        rows.append(m.row())
    return rows


def _collective_worker(rank: int, world: int, port: int, plan: CollectivePlan, out_dir: str) -> None:
    """Time every (kind, size) as a decode step meets it: one call after ~1 ms of compute, on one of
    ``plan.groups`` process groups in turn. Back-to-back calls would time a hot gloo path that a
    decode step never sees (its worker threads asleep between phases cost several times more).
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        groups = [dist.new_group(list(range(world))) for _ in range(plan.groups)]
        rows = _concurrent_rates(dist, torch, world, plan)
        busy = _busy(torch, plan.compute_between_s)
        ops = [(kind, *_collective_op(dist, torch, kind, n, world)) for kind in plan.kinds for n in plan.message_bytes]
        for _kind, _nb, op in ops:  # warm-up: connections and buffers
            for g in groups:
                op(g)
        # Rounds are interleaved over every (kind, size): a burst of load from elsewhere on the
        # machine spreads over all points instead of bending one part of the curve.
        spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
        dist.barrier()
        for r in range(plan.rounds):
            for i, (kind, nb, op) in enumerate(ops):
                busy()
                t0 = time.perf_counter()  # the system-wide monotonic clock: comparable across ranks
                op(groups[(r + i) % len(groups)])
                spans.setdefault((kind, nb), []).append((t0, time.perf_counter()))
        overlap = _measure_overlap(dist, torch, world, groups[0], plan) if plan.overlap_repeats else []
        rows += _concurrent_rates(dist, torch, world, plan)  # a second round, ~10 s after the first
        everyone: list = [None] * world
        dist.all_gather_object(everyone, spans)
        overlap_everyone: list = [None] * world
        dist.all_gather_object(overlap_everyone, overlap)
        rows_everyone: list = [None] * world
        dist.all_gather_object(rows_everyone, rows)
        if rank == 0:
            import json

            rows = slowest_rank_rows(rows_everyone)
            if overlap:
                rows += [m.row() for m in overlap_rows(overlap_everyone, world)]
            waits = []
            for (kind, nb), _ in spans.items():
                # From the last rank's arrival: ranks do the same work before each call, yet one
                # arrives first and waits; that wait is imbalance in the compute before the call
                # (a decode step's slowest rank carries it), not the collective's cost. Mean over
                # calls: gloo's heavy tail adds up in a step, so it must count here.
                per_call, wait = collective_times_s([e[(kind, nb)] for e in everyone])
                waits.append(wait)
                rows.append(Measurement(kind, "fp32", f"{nb} B", nb, 0.0, world, float(np.mean(per_call)), 0.0,
                                        int(per_call.size)).row())
            rows.append(Measurement("collective_wait", "fp32", "mean over calls and ranks", 0.0, 0.0, world,
                                    float(np.mean(waits)), 0.0, int(sum(len(v) for v in spans.values()))).row())
            Path(out_dir, f"world{world}.json").write_text(json.dumps(rows))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_collectives(group_sizes: tuple[int, ...], plan: CollectivePlan) -> list[Measurement]:
    """Spawn ``p`` gloo processes per group size; every process runs on its own core."""
    import json

    import torch.multiprocessing as mp

    out: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in group_sizes:
            mp.start_processes(_collective_worker, args=(p, _free_port(), plan, tmp), nprocs=p, join=True,
                               start_method="spawn")
            out += [Measurement(**r) for r in json.loads(Path(tmp, f"world{p}.json").read_text())]
    return out


# ---------------------------------------------------------------- profile


def _physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


def _num(v: float) -> float:
    return float(f"{v:.4g}")


def runtime_fixed_costs(measurements: list[Measurement], ranks: int, add_s: float):
    """(kernel_launch_s, step_overhead_s, their two source strings) from the runtime probe run by
    ``ranks`` ranks at once (1: alone), or None if it was not measured.

    step(L layers) = intercept + L x per_layer at B = 1 and an 8-token context, where every op is
    fixed cost: per_layer / the launches helix.step charges per dense layer is the fixed cost of one
    modelled op; the intercept less the launches charged for embedding + LM head is the per-step
    overhead.
    """
    what = "runtime_step" if ranks == 1 else "runtime_step_all_ranks"
    rows = [m for m in measurements if m.what == what and m.group_size == ranks]
    probes = sorted((int(m.size.split()[0]), m.median_s) for m in rows)
    if len({n for n, _ in probes}) < 2:
        return None
    (l0, t0), (l1, t1) = probes[0], probes[-1]
    per_layer = max((t1 - t0) / (l1 - l0), 0.0)
    per_layer_launches = SIMULATED_LAUNCHES_PER_DENSE_LAYER + (ranks > 1)  # + the combine at KVP > 1
    launch = per_layer / per_layer_launches
    intercept = t0 - l0 * per_layer
    step_overhead = max(intercept - SIMULATED_LAUNCHES_PER_STEP * launch, 0.0)
    who = ("one rank alone" if ranks == 1 else
           f"Helix KVP={ranks} on {ranks} ranks at once, time inside collectives taken out")
    probe_note = (f"decode steps of a minimal Llama (helix.runtime.llama, H=64, B=1, 8-token context, "
                  f"one thread per rank, {who}), median of {rows[0].samples}: "
                  + ", ".join(f"{n} layers {t * 1e3:.3f} ms" for n, t in probes))
    launch_note = (f"runtime fixed cost per modelled op: {per_layer * 1e3:.3f} ms per layer (slope) / "
                   f"{per_layer_launches} launches helix.step charges per dense layer; {probe_note}; "
                   f"a bare 1-element torch.add costs {add_s * 1e6:.2f} us")
    overhead_note = (f"per-step intercept {intercept * 1e3:.3f} ms less the {SIMULATED_LAUNCHES_PER_STEP} "
                     f"embedding + LM-head launches; {probe_note}")
    return launch, step_overhead, launch_note, overhead_note


def build_profile(measurements: list[Measurement], *, name: str, cores: int) -> tuple[dict, fit.LinearFit | None]:
    """The hardware mapping (every field, value + source + empirical) from measurements (rounds pooled)."""
    measurements = pool_rounds(measurements)
    by = {}
    for m in measurements:
        by.setdefault(m.what, []).append(m)

    def first(what):
        if what not in by:
            raise ValueError(f"calibration is missing {what!r} measurements")
        return by[what]

    add_s = first("launch")[0].median_s
    # the main profile serves runs with a rank on every core: the probe with every rank at once
    costs = runtime_fixed_costs(measurements, cores, add_s) or runtime_fixed_costs(measurements, 1, add_s)
    if costs:
        launch, step_overhead, launch_note, overhead_note = costs
    else:
        launch, step_overhead = add_s, 0.0
        launch_note = "median per-call time of a 1-element torch.add (eager op overhead), one thread"
        overhead_note = "not measured (no runtime decode probe): 0"
    stream = max(m.rate for m in first("stream_read"))
    concurrent = [m for m in by.get("stream_read_all_ranks", []) if m.group_size == cores]
    bw = min([stream] + [m.rate for m in concurrent])
    bw_note = (f"fp32 tensor.sum() over {', '.join(m.size for m in first('stream_read'))}, one thread: "
               f"{stream / 1e9:.2f} GB/s alone")
    if concurrent:
        bw_note += (f", {concurrent[0].rate / 1e9:.2f} GB/s for the slowest of {cores} ranks streaming at once (used: "
                    "a step waits for its slowest rank)")
    gemv = first("gemv")
    gemv_note = ", ".join(f"B={m.size.split('x')[0]}: {m.rate / 1e9:.1f} GB/s" for m in gemv)
    # the main profile serves runs with a rank on every core: attention with every rank at once,
    # over the bandwidth the main profile states (the single-rank profile: both alone)
    attn_rows = [m for m in by.get("decode_attention_all_ranks", []) if m.group_size == cores]
    attn_alone = not attn_rows
    attn_rows = attn_rows or first("decode_attention")
    attn_rate = attention_rate(attn_rows)
    eff = min(1.0, attn_rate / bw)
    mm = first("matmul")
    fp32 = [m for m in mm if m.dtype == "fp32"]
    peak32 = max(m.rate for m in fp32)
    classes = "; ".join(f"{m.dtype} {m.size}: {m.rate / 1e9:.1f} GFLOP/s" for m in mm)
    bf16 = [m for m in mm if m.dtype == "bf16"]
    mem = _physical_memory_bytes() / cores

    coll = [m for m in measurements if m.what in fit.KINDS]
    coll_fit = None
    if coll:
        coll_fit = fit.fit_collectives([m.what for m in coll], [m.n_bytes for m in coll],
                                       [m.group_size for m in coll], [m.median_s for m in coll])
        c = coll_fit.coefficients
        link_bw = 1.0 / c["s_per_byte"] if c["s_per_byte"] > 0 else 1e12
        sizes = sorted({m.n_bytes for m in coll})
        ps = sorted({m.group_size for m in coll})
        wait_note = ", ".join(f"{m.median_s * 1e3:.2f} ms at p={m.group_size}" for m in by.get("collective_wait", []))
        wait_note = wait_note or "(not recorded)"
        how = (f"gloo {', '.join(sorted({m.what for m in coll}))}, {sizes[0]:g}-{sizes[-1]:g} B, group sizes "
               f"{ps}; each call after ~1 ms of compute on one of 3 process groups in turn (as in a decode "
               f"step), timed from the last rank's arrival to the last exit (earlier ranks waited {wait_note} "
               f"on average: compute imbalance, not the collective), mean of {coll[0].samples} calls; joint "
               f"relative least squares to "
               f"helix.cost.collectives forms "
               f"(median |residual| {coll_fit.median_abs_error:.1%}, worst {coll_fit.max_abs_error:.1%})")
        sync, ring_base, ring_hop = c["sync_latency_s"], c["ring_base_latency_s"], c["ring_hop_latency_s"]
    else:
        link_bw, sync, ring_base, ring_hop, how = 1e12, 0.0, 0.0, 0.0, "not measured (single rank)"

    ov = sorted((m for m in by.get("comm_overlap", [])), key=lambda m: (m.group_size != cores, m.group_size))
    if ov:
        per_size = [m for m in by.get("overlap_both", []) if m.group_size == ov[0].group_size]
        detail = "; ".join(f"{m.size}: a2a {_ms(by, 'overlap_all_to_all', m)} + attention "
                           f"{_ms(by, 'overlap_attention', m)} alone, {m.median_s * 1e3:.3f} ms together, eta "
                           f"{m.rate:.2f}" for m in per_size) or "per-size rows not recorded"
        overlap, overlap_note, overlap_empirical = ov[0].rate, (
            f"gloo all_to_all_single(async_op=True) and a decode-attention einsum (fp32, sized to take about as long), "
            f"{ov[0].group_size} ranks, one thread each, timed alone and issued together (all-to-all, attention, "
            f"wait), each after a barrier; eta = (t_a2a + t_attn - t_both) / min(t_a2a, t_attn) on the means over "
            f"ranks, clipped to [0, 1], median of {ov[0].samples} repetitions over the sizes ({detail})"), True
    else:
        overlap, overlap_note, overlap_empirical = 1.0, ("not measured (no collectives): the paper's perfect "
                                                         "overlap [ASSUMPTION]"), False

    def e(value, source, empirical=True):
        return {"value": _num(value), "source": source, "empirical": empirical}

    host = f"{platform.machine()} {platform.processor() or ''}".strip()
    profile = {
        "name": name,
        "description": f"Measured by helix calibrate on {socket.gethostname()} ({host}), one rank = one core "
                       f"({cores} cores), {time.strftime('%Y-%m-%d')}",
        "peak_flops_per_s_fp4": e(0.0, "no FP4 units: 0 = fall back to the bf16 slot", False),
        "peak_flops_per_s_fp8": e(0.0, "no FP8 units: 0 = fall back to the bf16 slot", False),
        "peak_flops_per_s_bf16": e(peak32, "MEASURED fp32 matmul rate (the runtime computes in fp32, which maps "
                                   f"to this slot), best size class, one thread; all classes: {classes}"
                                   + ("" if bf16 else "; bf16 not measured")),
        "hbm_capacity_bytes": e(mem, f"physical memory / {cores} cores (one rank per core)", False),
        "hbm_bytes_per_s": e(bw, bw_note),
        "scale_up_domain_gpus": e(max(cores, 1), "ranks on one host share one transport (cores)", False),
        "link_bytes_per_s_per_direction": e(link_bw, "1 / fitted s-per-byte: " + how),
        "scale_out_bytes_per_s_per_direction": e(link_bw, "single host: no scale-out tier (= link)", False),
        "hbm_usable_fraction": e(0.8, "ASSUMPTION: 20 % of a core's memory share left to the OS, Python, torch"),
        "hbm_efficiency": e(eff, attention_note(attn_rows, attn_rate, bw, "alone" if attn_alone else
                                                f"the slowest of {cores} ranks running it at once")
                            + f". Decode GEMV x[B,4096] @ W[4096,8192] for comparison: {gemv_note}"),
        "flop_efficiency": e(1.0, "the peak slot already holds the measured rate"),
        "link_efficiency": e(1.0, "the link bandwidth already holds the fitted achieved rate"),
        "kernel_launch_s": e(launch, launch_note),
        "sync_latency_s": e(sync, "fitted alpha of the all-to-all (direct form): " + how),
        "ring_base_latency_s": e(ring_base, "fitted ring fixed part (all-reduce, all-gather): " + how),
        "ring_hop_latency_s": e(ring_hop, "fitted ring per-step latency (all-reduce 2(p-1) steps, all-gather p-1): "
                                + how),
        "nvls_latency_s": e(0.0, "no in-switch reduction on CPU (0 = not available)", False),
        "scale_out_latency_s": e(0.0, "single host: no scale-out tier", False),
        "step_overhead_s": e(step_overhead, overhead_note),
        "comm_overlap_efficiency": e(overlap, overlap_note, overlap_empirical),
        "all_reduce_algorithms": {"value": ["ring"], "source": "gloo (torch.distributed CPU backend) implements "
                                  "all_reduce as a ring only: no one-/two-shot through peer memory, no NVLS"},
    }
    return profile, coll_fit


def attention_note(rows: list[Measurement], rate: float, bw: float, how: str) -> str:
    sizes = ", ".join(f"{m.n_bytes / MIB:.0f} MiB of K+V {m.median_s * 1e3:.2f} ms" for m in rows)
    return (f"the runtime's GQA decode attention (helix.runtime.attention.local_attention, fp32, B=4 K=4 g=2 "
            f"Hsz=64, one thread, {how}; {sizes}): {rate / 1e9:.2f} GB/s (slope of time vs bytes) / the "
            f"profile's memory bandwidth {bw / 1e9:.2f} GB/s")


def _ms(by: dict, what: str, like: Measurement) -> str:
    """The median of the ``what`` row beside ``like`` (same size and group), in ms."""
    rows = [m for m in by.get(what, []) if m.size == like.size and m.group_size == like.group_size]
    return f"{rows[0].median_s * 1e3:.3f} ms" if rows else "?"


def single_rank_profile(profile: dict, measurements: list[Measurement]) -> dict | None:
    """The profile for a rank alone on the machine: ranks on one CPU share its memory bandwidth (and
    caches), so a lone rank streams faster than each of N ranks at once (the main profile's rate) and
    its runtime probe runs alone. None if the concurrent rate was not measured (then the main
    profile already holds the lone rates)."""
    measurements = pool_rounds(measurements)
    alone = [m for m in measurements if m.what == "stream_read"]
    if not alone or not any(m.what == "stream_read_all_ranks" for m in measurements):
        return None
    stream = max(m.rate for m in alone)
    out = dict(profile)
    out["name"] = f"{profile['name']}-single-rank"
    out["description"] = profile["description"] + "; the rate of one rank streaming alone"
    out["hbm_bytes_per_s"] = {"value": _num(stream), "empirical": True,
                              "source": f"fp32 tensor.sum() over {', '.join(m.size for m in alone)}, one thread, "
                                        f"no other rank streaming: {stream / 1e9:.2f} GB/s (for one-rank runs)"}
    attn = [m for m in measurements if m.what == "decode_attention"]
    if attn:
        rate = attention_rate(attn)
        out["hbm_efficiency"] = {"value": _num(min(1.0, rate / stream)), "empirical": True,
                                 "source": attention_note(attn, rate, stream, "alone")}
    launch = [m for m in measurements if m.what == "launch"]
    costs = runtime_fixed_costs(measurements, 1, launch[0].median_s if launch else 0.0)
    if costs:
        out["kernel_launch_s"] = {"value": _num(costs[0]), "source": costs[2], "empirical": True}
        out["step_overhead_s"] = {"value": _num(costs[1]), "source": costs[3], "empirical": True}
    return out


# ---------------------------------------------------------------- driver


@dataclass
class Calibration:
    profile: dict
    measurements: list[Measurement]
    collective_fit: fit.LinearFit | None
    wall_s: float
    single_rank_profile: dict | None = None  # beside the profile as <stem>.single-rank.yaml


def default_group_sizes(cores: int | None = None) -> tuple[int, ...]:
    """2, 4, 8, ... up to the core count: more ranks than cores would time contention."""
    cores = cores or os.cpu_count() or 1
    return tuple(p for p in (2, 4, 8, 16) if p <= cores)


STAGES = ("compute", "collectives", "drifting rates", "fit")  # what calibrate(progress=) reports, in order


def calibrate(*, quick: bool = False, group_sizes: tuple[int, ...] | None = None, name: str = "",
              progress=None) -> Calibration:
    """Measure this machine; ``quick`` uses tiny sizes (tests), not a usable profile. ``progress(stage)``
    is called as each of ``STAGES`` ends (collectives too when there are no groups to measure)."""
    done = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    group_sizes = default_group_sizes(cores) if group_sizes is None else group_sizes
    plan = ComputePlan.quick() if quick else ComputePlan()
    measurements = measure_local(plan)
    done(STAGES[0])
    if group_sizes:
        measurements += measure_collectives(group_sizes, CollectivePlan.quick() if quick else CollectivePlan())
    done(STAGES[1])
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measurements += measure_drifting_rates(plan)  # the second round, after the collectives
    finally:
        torch.set_num_threads(threads)
    done(STAGES[2])
    profile, coll_fit = build_profile(measurements, name=name or f"cpu-{socket.gethostname()}", cores=cores)
    done(STAGES[3])
    return Calibration(profile, measurements, coll_fit, time.perf_counter() - t0,
                       single_rank_profile(profile, measurements))


def single_rank_path(profile_path: Path) -> Path:
    """Where the one-rank variant of a profile lives: ``<stem>.single-rank.yaml`` beside it."""
    return profile_path.with_name(profile_path.stem + ".single-rank" + profile_path.suffix)


def profile_yaml(profile: dict) -> str:
    import yaml

    header = "# Written by `helix calibrate`; every measured number says how it was measured.\n"
    return header + yaml.safe_dump(profile, sort_keys=False, width=200)


def measurements_csv(measurements: list[Measurement]) -> str:
    cols = list(measurements[0].row()) if measurements else []
    lines = [",".join(cols)]
    for m in measurements:
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in m.row().values()))
    return "\n".join(lines) + "\n"
