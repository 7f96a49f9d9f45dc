"""Hold the simulator against the runtime: time real decode steps, predict the same steps, compare.

For every grid point (layout KVP x TPA, HOP-B on/off, batch B, context S) the runtime's Llama
decoder (helix.runtime.llama through helix.runtime.launch) runs on one process per rank, one torch
thread per process (a rank is a core, as in ``helix calibrate``):

1. ``prefill`` a short prompt, then extend every rank's KV cache to S tokens with random K/V
   through ``KVCache.reserve`` / ``write`` (the same staged round-robin ownership a long prefill
   would give; a real S-token prefill costs O(S^2) and would time nothing of interest);
2. ``warmup`` decode steps, then ``repeats`` timed ones, back to back after one barrier (as a decode
   loop runs them), round-robin over the layout's points (every point's KV is held at once); a
   step's time is the slowest rank's and the point's figure is the median over repeats; each runtime phase
   (``comm.phase_s``: qkv_projection, local_attention, kvp_all_to_all, ...) is the mean over
   repeats of the slowest rank (compute) or from the last rank's arrival (blocking collectives: see
   ``combine_ranks``);
3. ``helix.step.simulate`` predicts the step with the calibrated profile, fp32 everywhere, overlap
   ``pipelined`` (HOP-B) or ``serial``, and its breakdown is matched term by term to the phases.

Error = (predicted - measured) / measured, per point and per term. The tables, shape checks and the
figure are written by helix.validation.tables.

Runtime names used: launch.Job/RunSpec/prepare/spawn/WorkerError, Comm.create/destroy,
``comm.phase_s`` and ``comm.collective_spans``, the family's DECODER and model_spec, ``prefill``,
``decode_step`` and, to give a decoder an S-token context and switch it between points, its
``cache`` (KVCache.reserve/write/ensure_capacity/length), ``options``, ``arch``, ``Kl`` and
``next_position``. ``count_ops_per_phase`` (a
diagnostic) also wraps one Comm instance's ``phase`` to tag aten ops with the current phase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from helix.cost import collectives
from helix.validation import fit

# Simulator breakdown term -> runtime phases that implement it.
TERM_PHASES = {
    "qkv_projection": ("qkv_projection",),
    "attention": ("local_attention",),
    "combine": ("combine_partial_attention",),
    "o_projection": ("o_projection",),
    "ffn": ("ffn",),
    "kvp_all_to_all": ("kvp_all_to_all",),
    "o_projection_all_reduce": ("o_projection_all_reduce",),
    "ffn_all_reduce": ("ffn_all_reduce",),
    "embedding_all_reduce": ("embedding_all_reduce",),
    "lm_head_all_gather": ("lm_head_all_gather",),
}
OTHER = "other"  # step time outside every named phase (LM head, norms, Python) vs embedding_lm_head


@dataclass(frozen=True)
class GridPoint:
    kvp: int
    tpa: int
    hopb: bool
    batch: int
    context: int

    @property
    def ranks(self) -> int:
        return self.kvp * self.tpa

    @property
    def label(self) -> str:
        if self.kvp == 1 and self.tpa == 1:
            return "single rank"
        if self.kvp == 1:
            return f"TP={self.tpa} (KVP=1)"
        return f"Helix KVP={self.kvp} TPA={self.tpa}" + (" HOP-B" if self.hopb else "")


@dataclass(frozen=True)
class Grid:
    model: str
    points: tuple[GridPoint, ...]
    warmup: int = 2
    repeats: int = 5
    prompt_tokens: int = 16
    timeout_s: float = 120.0


# (KVP, TPA, HOP-B) timed when the machine has a core for each rank; bench-llama has 4 KV heads, so TPA <= 4.
LAYOUTS_BY_RANKS = {
    1: ((1, 1, False),),
    2: ((2, 1, False), (2, 1, True), (1, 2, False)),
    4: ((4, 1, False), (4, 1, True), (2, 2, False), (1, 4, False)),
    8: ((8, 1, False), (4, 2, False)),
}


def default_grid(cores: int) -> Grid:
    """Timed points use one rank per core (more ranks than cores would time contention, not the
    model): every layout of LAYOUTS_BY_RANKS with N <= cores, B in {1, 4, 8}, S in {4K, 16K, 64K};
    HOP-B with one chunk per request, so B > 1 only. On a 2-core machine: 33 points."""
    layouts = [lay for n, lays in sorted(LAYOUTS_BY_RANKS.items()) if n <= max(cores, 1) for lay in lays]
    points = [GridPoint(kvp, tpa, hopb, b, s) for b in (1, 4, 8) for s in (4096, 16384, 65536)
              for kvp, tpa, hopb in layouts if not (hopb and b == 1)]
    return Grid("bench-llama", tuple(points), warmup=2, repeats=25)


def tiny_grid() -> Grid:
    """Seconds: tiny-llama, KVP = 2 with and without HOP-B, two contexts (tests, smoke runs)."""
    pts = tuple(GridPoint(2, 1, h, 2, s) for s in (256, 1024) for h in (False, True))
    return Grid("tiny-llama", pts, warmup=1, repeats=3, prompt_tokens=8, timeout_s=60.0)


# ---------------------------------------------------------------- measuring (runs inside each rank)


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
    import torch

    cache, arch = decoder.cache, decoder.arch
    start = decoder.next_position
    positions = torch.arange(start, context)
    cache.reserve(positions)
    gen = torch.Generator().manual_seed(seed)
    batch = cache.k[0].shape[0]
    for layer in range(arch.num_layers):
        shape = (batch, context - start, decoder.Kl, arch.head_dim)  # [B, T, K/TPA, Hsz]
        cache.write(layer, torch.randn(shape, generator=gen) * 0.5, torch.randn(shape, generator=gen))
    decoder.next_position = context
    cache.ensure_capacity(cache.length + steps)


def _measure_rank(rank: int, world_size: int, init_method: str, work: _Work) -> list[dict]:
    import torch
    import torch.distributed as dist

    from helix.runtime import registry
    from helix.runtime.comm import Comm
    from helix.runtime.decoder import DecodeOptions

    torch.set_num_threads(1)  # one core per rank, as calibrated
    payload = work.payload
    comm = Comm.create(payload.job.layout, rank, world_size, init_method, timeout_s=payload.job.timeout_s)
    try:
        decoder = registry.family(payload.family).DECODER(payload.arch, payload.state_dict, comm,
                                                          name=payload.job.model)
        # Every point's request state is built first, then the steps are taken round-robin over the
        # points: a burst of load from elsewhere on the machine, or a drift of its memory bandwidth,
        # then lands on every point of the series alike instead of bending one of them.
        states = []
        for i, p in enumerate(work.points):
            gen = torch.Generator().manual_seed(i)
            prompt = torch.randint(0, payload.arch.vocab_size, (p.batch, work.prompt_tokens), generator=gen)
            out = decoder.prefill(prompt, DecodeOptions(hopb_chunks=p.batch if p.hopb else 1))
            _fill_cache(decoder, p.context, seed=1000 + i, steps=work.warmup + work.repeats)
            states.append({"cache": decoder.cache, "next_position": decoder.next_position,
                           "options": decoder.options, "tokens": out.next_tokens})
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


@dataclass
class Measured:
    point: GridPoint
    step_s: float  # median over repeats of the slowest rank's step (the headline figure)
    phase_s: dict[str, float]  # mean over repeats (see combine_ranks)
    samples: int
    spread: float  # (max - min) / median of the step samples
    mean_step_s: float = 0.0  # mean over repeats of the slowest rank's step: the phases add up to it
    wait_s: float = 0.0  # mean over repeats and ranks of the time ranks wait at collectives for the last
    calls_s: dict[str, list[float]] = field(default_factory=dict)  # blocking collective -> each call's time


COLLECTIVE_PHASES = frozenset(("kvp_all_to_all", "o_projection_all_reduce", "ffn_all_reduce", "embedding_all_reduce",
                               "lm_head_all_gather"))


def last_arrival_calls(spans_per_rank: list[list[tuple[str, float, float]]]) -> list[tuple[str, float, float]]:
    """One step's blocking collectives timed from the last rank's arrival: (phase, seconds, wait) per call.

    Call i of every rank is the same collective (ranks issue them in the same order). It cannot finish
    on any rank before the last one enters, so its cost is max(exit) - max(entry); the time earlier
    ranks spend waiting for the last (``wait``, mean over ranks) is rank imbalance in the compute
    before it, which the slowest rank's compute phases already carry. Pure; tested.
    """
    calls = {len(s) for s in spans_per_rank}
    if len(calls) != 1:
        raise ValueError(f"ranks issued different numbers of blocking collectives: {sorted(calls)}")
    out = []
    for call in zip(*spans_per_rank, strict=True):
        names = {c[0] for c in call}
        if len(names) != 1:
            raise ValueError(f"ranks disagree on the collective's phase: {sorted(names)}")
        enter = max(c[1] for c in call)
        out.append((call[0][0], max(c[2] for c in call) - enter, sum(enter - c[1] for c in call) / len(call)))
    return out


def combine_ranks(point: GridPoint, per_rank: list[dict]) -> Measured:
    """Per repeat: the slowest rank's step and compute phases; collectives from the last arrival.

    Over repeats, the step's headline is the median; phases are means, so that with the mean step
    they add up (gloo collectives have a heavy tail: ~10 % of calls take a 4 ms scheduler tick, and a
    sum of per-phase medians would hide it). A blocking collective is timed from the moment the last
    rank reaches it (``last_arrival_calls``), as ``helix calibrate`` times it: the wait of the ranks that
    arrive first is imbalance in the compute before it, not the collective's cost. Asynchronous
    exchanges (HOP-B's all-to-all: issue and ``wait``) leave no span and are the mean over ranks. Pure;
    tested.
    """
    steps = np.max(np.array([r["step_s"] for r in per_rank]), axis=0)
    names = sorted({k for r in per_rank for ph in r["phase_s"] for k in ph})
    repeats = len(per_rank[0]["step_s"])
    # per repeat: {phase: seconds} of its blocking collectives from the last arrival, and the wait
    timed: list[tuple[dict[str, float], float]] = []
    calls: dict[str, list[float]] = {}
    for i in range(repeats):
        per_phase, wait = {}, 0.0
        for name, seconds, w in (last_arrival_calls([r["spans"][i] for r in per_rank]) if "spans" in per_rank[0]
                                 else []):
            per_phase[name] = per_phase.get(name, 0.0) + seconds
            calls.setdefault(name, []).append(seconds)
            wait += w
        timed.append((per_phase, wait))
    phases = {}
    for name in names:
        per = np.array([[ph.get(name, 0.0) for ph in r["phase_s"]] for r in per_rank])
        if name in COLLECTIVE_PHASES:
            across = np.array([t[0][name] if name in t[0] else per[:, i].mean() for i, t in enumerate(timed)])
        else:
            across = per.max(axis=0)
        phases[name] = float(np.mean(across))
    med = float(np.median(steps))
    return Measured(point, med, phases, int(steps.size), float((steps.max() - steps.min()) / med),
                    float(np.mean(steps)), float(np.mean([t[1] for t in timed])), calls)


def reference_attention_rate(kv_bytes: int = 128 * 1024 * 1024, repeats: int = 5) -> float:
    """Bytes/s of the runtime's decode attention over ``kv_bytes`` of K+V, one thread, in this process
    (the probe ``helix calibrate`` fits ``hbm_efficiency`` on): a reading of the machine's speed now."""
    import torch

    from helix.validation.calibrate import measure_decode_attention

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_decode_attention(kv_bytes, repeats).rate
    finally:
        torch.set_num_threads(threads)


def measure(grid: Grid, progress=None, drift: list[float] | None = None) -> tuple[list[Measured], object]:
    """Spawn one job per layout (its points share the process group and weight shards).

    Returns the measurements and the simulator's ModelSpec of the model that ran. ``progress(label, n)``
    is called after each layout with its label and the number of points it measured. ``drift``, when
    given, receives ``reference_attention_rate()`` before each layout and after the last.
    """
    import torch

    from helix.layout import Layout
    from helix.runtime import registry
    from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, spawn

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
        for j, p in enumerate(pts):
            out.append(combine_ranks(p, [ranks[r][j] for r in range(kvp * tpa)]))
        if progress:
            progress(pts[0].label.split(" HOP-B")[0], len(pts))
    if drift is not None:
        drift.append(reference_attention_rate())
    return out, model


# ---------------------------------------------------------------- predicting and comparing


def predict(model, hw, p: GridPoint):
    """The simulator's StepResult for a grid point (fp32 everywhere, as the runtime computes); HOP-B
    with the runtime's own schedule, one chunk per request (``hopb_chunks = B``)."""
    from helix.layout import Layout
    from helix.specs.precision import PrecisionSpec
    from helix.step import simulate

    return simulate(model, hw, Layout.helix(kvp=p.kvp, tpa=p.tpa), p.batch, p.context,
                    PrecisionSpec.uniform("fp32"), overlap="pipelined" if p.hopb else "serial",
                    hopb_chunks=p.batch if p.hopb else None, allow_uneven=True)


@dataclass
class Row:
    point: GridPoint
    measured_s: float
    predicted_s: float
    spread: float
    terms: dict[str, tuple[float, float]] = field(default_factory=dict)  # term -> (predicted, measured) s
    measured_mean_s: float = 0.0
    predicted_ring_ar_s: float = 0.0  # diagnostic: all-reduce restricted to the ring algorithm
    wait_s: float = 0.0  # per step, the time ranks wait at blocking collectives for the last to arrive
    calls_s: dict[str, list[float]] = field(default_factory=dict)  # blocking collective -> each call's time
    samples: int = 0  # timed steps

    @property
    def ring_ar_error(self) -> float:
        return float(fit.relative_errors(self.predicted_ring_ar_s, self.measured_s))

    @property
    def error(self) -> float:
        return float(fit.relative_errors(self.predicted_s, self.measured_s))


def compare(measured: Measured, breakdown: dict[str, float], ttl_s: float) -> Row:
    """Match the simulator's terms to the measured phases; the rest of the step is ``other``."""
    terms = {}
    named = 0.0
    for term, phases in TERM_PHASES.items():
        m = sum(measured.phase_s.get(ph, 0.0) for ph in phases)
        named += m
        pr = float(breakdown.get(term, 0.0))
        if pr > 0 or m > 0:
            terms[term] = (pr, m)
    step = measured.mean_step_s or measured.step_s
    terms[OTHER] = (float(breakdown.get("embedding_lm_head", 0.0)) + float(breakdown.get("step_overhead", 0.0)),
                    max(step - named, 0.0))
    return Row(measured.point, measured.step_s, float(ttl_s), measured.spread, terms, step,
               wait_s=measured.wait_s, calls_s=measured.calls_s, samples=measured.samples)


def ring_only_all_reduce_ttl_s(model, hw, p: GridPoint, result) -> float:
    """Diagnostic: the predicted step if all-reduce could only use the ring algorithm.

    helix.cost.collectives takes the cheapest of ring, one-shot and two-shot; gloo implements
    neither of the last two (they need peer memory). Raising the one-/two-shot sync latency out of
    reach leaves the simulator's own ring formula; the all-to-all and all-gather are untouched
    because only the all-reduce terms of the breakdown are swapped.
    """
    from dataclasses import replace

    from helix.cost.messages import step_messages
    from helix.specs.precision import PrecisionSpec

    ring_hw = replace(hw, all_reduce_algorithms=("ring",))
    delta = 0.0
    for m in step_messages(model, PrecisionSpec.uniform("fp32"), "helix", p.tpa, p.kvp, 1, p.ranks, 1, 1, p.batch):
        if m.kind == "all_reduce" and float(m.group_size) > 1:
            delta += float(m.calls_per_step) * float(
                collectives.all_reduce_s(m.n_bytes, m.group_size, ring_hw)
                - collectives.all_reduce_s(m.n_bytes, m.group_size, hw))
    return float(result.ttl_s) + delta


@dataclass
class ValidationResult:
    rows: list[Row]
    hardware: str
    model: str
    wall_s: float
    notes: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)  # aten ops per decode step, by runtime phase
    drift_rates: list[float] = field(default_factory=list)  # reference attention bytes/s around each layout
    profiled_rate: float = 0.0  # the same as the (single-rank) profile predicts it

    def summary(self) -> dict[str, float]:
        return fit.summarize_errors([r.error for r in self.rows])

    def summary_json(self) -> dict:
        s = self.summary()
        ring = fit.summarize_errors([r.ring_ar_error for r in self.rows])
        return {"points": s["points"], "median_abs_error": round(s["median_abs"], 4),
                "max_abs_error": round(s["max_abs"], 4), "bias": round(s["median"], 4),
                "ring_only_all_reduce": {"median_abs_error": round(ring["median_abs"], 4),
                                         "max_abs_error": round(ring["max_abs"], 4)},
                "mean_step": {k: round(v, 4) for k, v in self.mean_step_summary().items() if k != "points"},
                "reference_attention_gb_per_s": [round(r / 1e9, 2) for r in self.drift_rates],
                "profile_attention_gb_per_s": round(self.profiled_rate / 1e9, 2),
                "hardware": self.hardware, "wall_s": round(self.wall_s, 1)}

    def mean_step_summary(self) -> dict[str, float]:
        """Diagnostic: the errors against the mean step instead of the median (the simulator's TTL is an
        expected step time; gloo's bimodal latency puts the two apart)."""
        return fit.summarize_errors([float(fit.relative_errors(r.predicted_s, r.measured_mean_s or r.measured_s))
                                     for r in self.rows])


def run_validation(grid: Grid, hw, repeats: int | None = None, progress=None,
                   ops_per_phase: bool = True, hw_single_rank=None, drift_check: bool = True) -> ValidationResult:
    """``hw_single_rank``: the profile for one-rank points (a rank alone gets more memory bandwidth
    than each of N ranks streaming at once); None = ``hw`` for every point. ``drift_check`` reads the
    machine's speed (``reference_attention_rate``) around every layout and reports it against the
    profile's, so that a run on a machine that sped up or slowed down since calibrate says so."""
    from dataclasses import replace

    t0 = time.perf_counter()
    if repeats is not None:
        grid = replace(grid, repeats=repeats)
    drift: list[float] = []
    measured, model = measure(grid, progress, drift if drift_check else None)
    rows = []
    for m in measured:
        point_hw = hw_single_rank if (hw_single_rank is not None and m.point.ranks == 1) else hw
        res = predict(model, point_hw, m.point)
        row = compare(m, {k: float(v) for k, v in res.breakdown.items()}, float(res.ttl_s))
        row.predicted_ring_ar_s = ring_only_all_reduce_ttl_s(model, point_hw, m.point, res)
        rows.append(row)
    result = ValidationResult(rows, hw.name, grid.model, time.perf_counter() - t0)
    if hw_single_rank is not None:
        result.notes.append(f"One-rank points use `{hw_single_rank.name}` (memory bandwidth of a rank streaming "
                            f"alone: {hw_single_rank.hbm_bytes_per_s / 1e9:.1f} GB/s; two-rank points "
                            f"{hw.hbm_bytes_per_s / 1e9:.1f} GB/s per rank with both streaming).")
    if drift:
        alone = hw_single_rank or hw
        profiled = alone.hbm_bytes_per_s * alone.hbm_efficiency
        result.drift_rates = drift
        result.profiled_rate = profiled
        result.notes.append(
            "Machine speed during this run: the runtime's decode attention (128 MiB of K+V, one thread, alone) ran at "
            + ", ".join(f"{r / 1e9:.2f}" for r in drift) + f" GB/s before each layout and at the end; the "
            f"{'single-rank ' if hw_single_rank else ''}profile's bandwidth × efficiency is {profiled / 1e9:.2f} GB/s "
            f"({min(drift) / profiled - 1:+.0%} to {max(drift) / profiled - 1:+.0%}). On a shared machine this moves "
            "between calibrate and validate, and every attention-bound point moves with it.")
    if ops_per_phase:
        result.op_counts = count_ops_per_phase(grid.model, grid.points[-1].batch, min(4096, grid.points[-1].context))
    return result


# Kernel launches per step the simulator charges (helix.step: one per op, two for the FFN and for
# embedding + LM head), by runtime phase.
SIMULATED_LAUNCHES_PER_LAYER = {"qkv_projection": 1, "local_attention": 1, "combine_partial_attention": 1,
                                "o_projection": 1, "ffn": 2}


def count_ops_per_phase(model_name: str, batch: int, context: int) -> dict[str, int]:
    """Aten ops one single-rank decode step issues, by runtime phase (``other``: outside every phase).

    Diagnostic for the launch term: runs in this process (one rank, no process group), wraps this
    Comm instance's ``phase`` to know the current phase, and counts ops with a TorchDispatchMode.
    """
    from contextlib import contextmanager

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from helix.layout import Layout
    from helix.runtime import registry
    from helix.runtime.comm import Comm
    from helix.runtime.decoder import DecodeOptions
    from helix.runtime.launch import Job, RunSpec, prepare

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

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[current[0]] = counts.get(current[0], 0) + 1
            return func(*args, **(kwargs or {}))

    prompt = torch.randint(0, payload.arch.vocab_size, (batch, 8), generator=torch.Generator().manual_seed(0))
    tokens = decoder.prefill(prompt, DecodeOptions()).next_tokens
    _fill_cache(decoder, context, seed=0)
    tokens = decoder.decode_step(tokens).next_tokens
    with _Count():
        decoder.decode_step(tokens)
    return counts
