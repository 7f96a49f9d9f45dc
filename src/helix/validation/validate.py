"""``helix validate``'s driver (torch worker code): time real decode steps, predict the same steps, compare.

For every grid point (helix.validation.grid: layout KVP x TPA, HOP-B on/off, batch B, context S) the
runtime's Llama decoder (helix.runtime.llama through helix.runtime.launch) runs on one process per rank,
one torch thread per process (a rank is a core, as in ``helix calibrate``):

1. ``prefill`` a short prompt, then extend every rank's KV cache to S tokens with random K/V
   through ``KVCache.reserve`` / ``write`` (the same staged round-robin ownership a long prefill
   would give; a real S-token prefill costs O(S^2) and would time nothing of interest);
2. ``warmup`` decode steps, then ``repeats`` timed ones, back to back after one barrier (as a decode
   loop runs them), round-robin over the layout's points (every point's KV is held at once);
3. helix.validation.compare reduces the ranks' rows, predicts each point with the simulator and
   matches the terms; helix.validation.tables writes the tables, shape checks and figure.

Runtime names used: launch.Job/RunSpec/prepare/spawn/WorkerError, Comm.create/destroy,
``comm.phase_s`` and ``comm.collective_spans``, the family's DECODER and model_spec, ``prefill``,
``decode_step`` and, to give a decoder an S-token context and switch it between points, its
``cache`` (KVCache.reserve/write/ensure_capacity/length), ``options``, ``arch``, ``Kl`` and
``next_position``. ``count_ops_per_phase`` (a diagnostic) also wraps one Comm instance's ``phase`` to
tag aten ops with the current phase.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from helix.layout import Layout
from helix.runtime import registry
from helix.runtime.comm import Comm
from helix.runtime.decoder import DecodeOptions
from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, spawn
from helix.validation.compare import OTHER, Measured, ValidationResult, combine_ranks, predicted_row, simulated_launches
from helix.validation.grid import Grid, GridPoint
from helix.validation.probes import reference_attention_rate


@dataclass(frozen=True)
class _Work:
    payload: object  # helix.runtime.launch.Payload
    points: tuple[GridPoint, ...]
    warmup: int
    repeats: int
    prompt_tokens: int


def _fill_cache(decoder, context: int, seed: int, steps: int = 0) -> None:
    """Extend every layer's KV to ``context`` tokens with random K/V (owned slots only), with room
    for ``steps`` more tokens: a cache that doubles its storage inside a timed step (one copy of
    the whole KV, hundreds of ms at 64K) would time the allocator, not the step."""
    cache, arch = decoder.cache, decoder.arch
    start = decoder.next_position
    cache.reserve(torch.arange(start, context))
    gen = torch.Generator().manual_seed(seed)
    batch = cache.k[0].shape[0]
    for layer in range(arch.num_layers):
        shape = (batch, context - start, decoder.Kl, arch.head_dim)  # [B, T, K/TPA, Hsz]
        cache.write(layer, torch.randn(shape, generator=gen) * 0.5, torch.randn(shape, generator=gen))
    decoder.next_position = context
    cache.ensure_capacity(cache.length + steps)


def _prepare_points(decoder, payload, work: _Work) -> list[dict]:
    """Every point's request state, built before any step is timed: the steps then go round-robin over
    the points, so a burst of load from elsewhere on the machine, or a drift of its memory bandwidth,
    lands on every point of the series alike instead of bending one of them."""
    states = []
    for i, p in enumerate(work.points):
        gen = torch.Generator().manual_seed(i)
        prompt = torch.randint(0, payload.arch.vocab_size, (p.batch, work.prompt_tokens), generator=gen)
        out = decoder.prefill(prompt, DecodeOptions(hopb_chunks=p.batch if p.hopb else 1))
        _fill_cache(decoder, p.context, seed=1000 + i, steps=work.warmup + work.repeats)
        states.append({"cache": decoder.cache, "next_position": decoder.next_position,
                       "options": decoder.options, "tokens": out.next_tokens})
    return states


def _measure_rank(rank: int, world_size: int, init_method: str, work: _Work) -> list[dict]:
    torch.set_num_threads(1)  # one core per rank, as calibrated
    payload = work.payload
    comm = Comm.create(payload.job.layout, rank, world_size, init_method, timeout_s=payload.job.timeout_s)
    try:
        decoder = registry.family(payload.family).DECODER(payload.arch, payload.state_dict, comm,
                                                          name=payload.job.model)
        states = _prepare_points(decoder, payload, work)
        rows = [{"point": p, "step_s": [], "phase_s": [], "spans": []} for p in work.points]
        # One barrier, then steps back to back as a decode loop runs them: each step's collectives
        # keep the ranks in step. A barrier before every step made the step's first collective pay
        # for it (the embedding all-reduce: 1.36 ms median after a barrier, 0.47 without; steps 12 %
        # longer).
        if world_size > 1:
            dist.barrier()
        for repeat in range(work.warmup + work.repeats):
            for state, row in zip(states, rows, strict=True):
                decoder.cache, decoder.next_position = state["cache"], state["next_position"]
                decoder.options = state["options"]
                comm.phase_s.clear()
                comm.collective_spans.clear()
                t0 = time.perf_counter()
                out = decoder.decode_step(state["tokens"])
                elapsed = time.perf_counter() - t0
                state["tokens"], state["next_position"] = out.next_tokens, decoder.next_position
                if repeat >= work.warmup:
                    row["step_s"].append(elapsed)
                    row["phase_s"].append(dict(comm.phase_s))
                    row["spans"].append(list(comm.collective_spans))
        for state, row in zip(states, rows, strict=True):
            row["kv_tokens"] = state["cache"].length
        return rows
    finally:
        Comm.destroy()


def measure(grid: Grid, progress=None, drift: list[float] | None = None) -> tuple[list[Measured], object]:
    """Spawn one job per layout (its points share the process group and weight shards).

    Returns the measurements and the simulator's ModelSpec of the model that ran. ``progress(label, n)``
    is called after each layout with its label and the number of points it measured. ``drift``, when
    given, receives ``reference_attention_rate()`` before each layout and after the last.
    """
    out: list[Measured] = []
    model = None
    layouts = sorted({(p.kvp, p.tpa) for p in grid.points}, key=lambda kt: (kt[0] * kt[1], kt))
    for kvp, tpa in layouts:
        if drift is not None:
            drift.append(reference_attention_rate())
        pts = tuple(p for p in grid.points if (p.kvp, p.tpa) == (kvp, tpa))
        job = Job(grid.model, Layout.helix(kvp=kvp, tpa=tpa), torch.zeros(1, 1, dtype=torch.int64), (RunSpec(2),),
                  timeout_s=grid.timeout_s)
        payload, _ = prepare(job)
        model = registry.family(payload.family).model_spec(payload.arch, grid.model)
        work = _Work(payload, pts, grid.warmup, grid.repeats, grid.prompt_tokens)
        try:
            ranks = spawn(_measure_rank, kvp * tpa, work, timeout_s=60.0 + 30.0 * len(pts))
        except WorkerError as exc:
            if exc.input_error() is not None:
                raise exc.input_error() from None
            raise
        out += [combine_ranks(p, [ranks[r][j] for r in range(kvp * tpa)]) for j, p in enumerate(pts)]
        if progress:
            progress(pts[0].label.split(" HOP-B")[0], len(pts))
    if drift is not None:
        drift.append(reference_attention_rate())
    return out, model


def _notes(hw, hw_single_rank, drift: list[float]) -> list[str]:
    notes = []
    if hw_single_rank is not None:
        notes.append(f"One-rank points use `{hw_single_rank.name}` (memory bandwidth of a rank streaming "
                     f"alone: {hw_single_rank.hbm_bytes_per_s / 1e9:.1f} GB/s; two-rank points "
                     f"{hw.hbm_bytes_per_s / 1e9:.1f} GB/s per rank with both streaming).")
    if drift:
        alone = hw_single_rank or hw
        profiled = alone.hbm_bytes_per_s * alone.hbm_efficiency
        notes.append(
            "Machine speed during this run: the runtime's decode attention (128 MiB of K+V, one thread, alone) ran at "
            + ", ".join(f"{r / 1e9:.2f}" for r in drift) + f" GB/s before each layout and at the end; the "
            f"{'single-rank ' if hw_single_rank else ''}profile's bandwidth × efficiency is {profiled / 1e9:.2f} GB/s "
            f"({min(drift) / profiled - 1:+.0%} to {max(drift) / profiled - 1:+.0%}). On a shared machine this moves "
            "between calibrate and validate, and every attention-bound point moves with it.")
    return notes


def run_validation(grid: Grid, hw, repeats: int | None = None, progress=None,
                   ops_per_phase: bool = True, hw_single_rank=None, drift_check: bool = True) -> ValidationResult:
    """``hw_single_rank``: the profile for one-rank points (a rank alone gets more memory bandwidth
    than each of N ranks streaming at once); None = ``hw`` for every point. ``drift_check`` reads the
    machine's speed (``reference_attention_rate``) around every layout and reports it against the
    profile's, so that a run on a machine that sped up or slowed down since calibrate says so."""
    t0 = time.perf_counter()
    if repeats is not None:
        grid = replace(grid, repeats=repeats)
    drift: list[float] = []
    measured, model = measure(grid, progress, drift if drift_check else None)
    rows = [predicted_row(model, hw_single_rank if (hw_single_rank is not None and m.point.ranks == 1) else hw, m)
            for m in measured]
    alone = hw_single_rank or hw
    counts = (count_ops_per_phase(grid.model, grid.points[-1].batch, min(4096, grid.points[-1].context))
              if ops_per_phase else {})
    return ValidationResult(rows, hw.name, grid.model, time.perf_counter() - t0, _notes(hw, hw_single_rank, drift),
                            counts, simulated_launches(model) if counts else {}, drift,
                            alone.hbm_bytes_per_s * alone.hbm_efficiency if drift else 0.0)


class _CountOps(TorchDispatchMode):
    """Counts aten ops into ``counts`` under the phase ``current[0]`` names."""

    def __init__(self, counts: dict[str, int], current: list[str]):
        super().__init__()
        self.counts, self.current = counts, current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[self.current[0]] = self.counts.get(self.current[0], 0) + 1
        return func(*args, **(kwargs or {}))


def count_ops_per_phase(model_name: str, batch: int, context: int) -> dict[str, int]:
    """Aten ops one single-rank decode step issues, by runtime phase (``other``: outside every phase).

    Diagnostic for the launch term: runs in this process (one rank, no process group), wraps this
    Comm instance's ``phase`` to know the current phase, and counts ops with a TorchDispatchMode.
    """
    payload, _ = prepare(Job(model_name, Layout.helix(kvp=1), torch.zeros(1, 1, dtype=torch.int64), (RunSpec(2),)))
    comm = Comm.create(Layout.helix(kvp=1, tpa=1), 0, 1, "env://")
    decoder = registry.family(payload.family).DECODER(payload.arch, payload.state_dict, comm, name=model_name)
    current, timed_phase = [OTHER], comm.phase

    @contextmanager
    def tagged(name):
        previous, current[0] = current[0], name
        with timed_phase(name):
            yield
        current[0] = previous

    comm.phase = tagged
    counts: dict[str, int] = {}
    prompt = torch.randint(0, payload.arch.vocab_size, (batch, 8), generator=torch.Generator().manual_seed(0))
    tokens = decoder.prefill(prompt, DecodeOptions()).next_tokens
    _fill_cache(decoder, context, seed=0)
    tokens = decoder.decode_step(tokens).next_tokens
    with _CountOps(counts, current):
        decoder.decode_step(tokens)
    return counts
