"""The collective probe (torch worker code): gloo collectives timed as a decode step meets them, the
probes every rank runs at once, and the compute-communication overlap.

One process per rank, each on its own core (``measure_collectives`` spawns them per group size); rank 0
writes every row, reduced over ranks by helix.validation.measurement, to a JSON file the parent reads.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helix.validation import fit
from helix.validation.measurement import KIB, MIB, Measurement, overlap_rows, slowest_rank_rows
from helix.validation.probes import ComputePlan, measure_decode_attention
from helix.validation.runtime_probe import RUNTIME_PROBE_LAYERS, measure_runtime_step
from helix.validation.timing import last_arrival, robust_median_s, time_call_s


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


def _collective_op(kind: str, n: int, world: int):
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


def _busy(seconds: float):
    """A no-argument call that keeps this core busy for about ``seconds`` with small matmuls."""
    a = torch.randn(128, 128)
    t0 = time.perf_counter()
    a @ a
    reps = max(1, int(seconds / max(time.perf_counter() - t0, 1e-6)))

    def work():
        for _ in range(reps):
            a @ a

    return work


def _attention_op(tokens: int):
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


def _sized_attention(a2a_async, group, probe_tokens: int = 2048):
    """An attention op sized (on rank 0, shared with every rank) to take about as long as the all-to-all."""
    for _ in range(3):  # warm-up
        a2a_async().wait()
    dist.barrier(group=group)
    t_a = []
    for _ in range(5):
        dist.barrier(group=group)
        t0 = time.perf_counter()
        a2a_async().wait()
        t_a.append(time.perf_counter() - t0)
    probe = _attention_op(probe_tokens)
    probe()
    t_probe = robust_median_s(time_call_s(probe, repeats=3, warmup=1))
    tokens = [int(np.clip(probe_tokens * np.median(t_a) / t_probe, 16, 262144))]
    dist.broadcast_object_list(tokens, src=0, group=group)  # the same op on every rank
    attend = _attention_op(tokens[0])
    attend()
    return tokens[0], attend


def _measure_overlap(world: int, group, plan: CollectivePlan) -> list[dict]:
    """Per message size and repetition: (t_a2a, t_attention, t_both) on this rank, each after a barrier."""
    out = []
    for n in plan.overlap_message_bytes:
        elems = max(n // 4, world) // world * world
        src, dst = torch.ones(elems), torch.empty(elems)

        def a2a_async(dst=dst, src=src):
            return dist.all_to_all_single(dst, src, group=group, async_op=True)

        tokens, attend = _sized_attention(a2a_async, group)
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
            out.append({"n_bytes": elems * 4, "tokens": tokens, "times": times})
    return out


def _concurrent_rates(world: int, plan: CollectivePlan) -> list[dict]:
    """This rank's rows of the probes every rank runs at once (reduced to the slowest rank later)."""
    # Streaming read with every rank streaming at once: the bandwidth one rank gets under load.
    x = torch.ones(plan.concurrent_stream_bytes // 4)
    dist.barrier()
    med = robust_median_s(time_call_s(x.sum, repeats=7))
    rows = [Measurement("stream_read_all_ranks", "fp32", f"{plan.concurrent_stream_bytes / MIB:g} MiB",
                        plan.concurrent_stream_bytes, 0.0, world, med, plan.concurrent_stream_bytes / med, 7).row()]
    del x
    # The runtime's decode attention on every rank at once: ranks share the last-level cache as well
    # as the memory controllers, and attention (scores, softmax) suffers more than a streaming sum.
    for n in plan.concurrent_attention_kv_bytes:
        dist.barrier()
        rows.append(replace(measure_decode_attention(n, 7), what="decode_attention_all_ranks", group_size=world).row())
    # The runtime probe (see measure_runtime_step) as Helix KVP = world on every rank at once.
    for n in RUNTIME_PROBE_LAYERS:
        dist.barrier()
        m = measure_runtime_step(n, plan.probe_repeats, kvp=world)
        rows.append(replace(m, what="runtime_step_all_ranks", group_size=world).row())
    return rows


def _time_collectives(world: int, groups, plan: CollectivePlan) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """(entry, exit) of every call per (kind, bytes), each call after ~1 ms of compute on one of the
    process groups in turn. Back-to-back calls would time a hot gloo path that a decode step never sees
    (its worker threads asleep between phases cost several times more)."""
    busy = _busy(plan.compute_between_s)
    ops = [(kind, *_collective_op(kind, n, world)) for kind in plan.kinds for n in plan.message_bytes]
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
    return spans


def _collective_rows(everyone: list[dict], world: int) -> list[dict]:
    """Per (kind, bytes) the mean call from the last rank's arrival, and the ranks' mean wait. Ranks do
    the same work before each call, yet one arrives first and waits: imbalance in the compute before the
    call (a decode step's slowest rank carries it), not the collective's cost. The mean over calls, not
    the median: gloo's heavy tail adds up in a step, so it must count here."""
    rows, waits = [], []
    for kind, nb in everyone[0]:
        per_call, wait = last_arrival([spans[(kind, nb)] for spans in everyone])
        waits.append(float(np.mean(wait)))
        rows.append(Measurement(kind, "fp32", f"{nb} B", nb, 0.0, world, float(np.mean(per_call)), 0.0,
                                int(per_call.size)).row())
    rows.append(Measurement("collective_wait", "fp32", "mean over calls and ranks", 0.0, 0.0, world,
                            float(np.mean(waits)), 0.0, int(sum(len(v) for v in everyone[0].values()))).row())
    return rows


def _gathered(obj, world: int) -> list:
    everyone: list = [None] * world
    dist.all_gather_object(everyone, obj)
    return everyone


def _collective_worker(rank: int, world: int, port: int, plan: CollectivePlan, out_dir: str) -> None:
    """One rank: the concurrent probes, every collective, the overlap, the concurrent probes again (~10 s
    later); rank 0 writes the rows reduced over ranks to ``world<p>.json``."""
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        groups = [dist.new_group(list(range(world))) for _ in range(plan.groups)]
        rows = _concurrent_rates(world, plan)
        spans = _time_collectives(world, groups, plan)
        overlap = _measure_overlap(world, groups[0], plan) if plan.overlap_repeats else []
        rows += _concurrent_rates(world, plan)  # a second round, ~10 s after the first
        spans_everyone, overlap_everyone, rows_everyone = (_gathered(x, world) for x in (spans, overlap, rows))
        if rank == 0:
            out = slowest_rank_rows(rows_everyone)
            if overlap:
                out += [m.row() for m in overlap_rows(overlap_everyone, world)]
            out += _collective_rows(spans_everyone, world)
            Path(out_dir, f"world{world}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_collectives(group_sizes: tuple[int, ...], plan: CollectivePlan) -> list[Measurement]:
    """Spawn ``p`` gloo processes per group size; every process runs on its own core."""
    out: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in group_sizes:
            mp.start_processes(_collective_worker, args=(p, _free_port(), plan, tmp), nprocs=p, join=True,
                               start_method="spawn")
            out += [Measurement(**r) for r in json.loads(Path(tmp, f"world{p}.json").read_text())]
    return out
