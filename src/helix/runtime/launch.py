"""Jobs: build the model once, start one worker per rank (spawned on CPU or under torchrun), collect.

A ``Job`` names a registry model, a ``helix.layout.Layout``, a prompt batch and one or more ``RunSpec``
(decode options + new tokens); a job's runs share one process group and one set of weight shards.
Layouts (PP = 1), checked when the Job is made: Helix KVP x TPA with the FFN as TPF x EP on the same
N ranks, or the DP+EP baseline (``Layout.dp_ep(N)``: N = DP = EP, whole requests and experts per rank).

Every family checks the layout (``check_layout``) in the launcher and on every rank. What a decoder
reports beyond tokens (DeepSeek: the expert load per step) comes back in ``RunResult.extras``.

Bad input is found before any process group exists: ``prepare`` validates in the launching process,
and every worker validates again (a torchrun launch has no launcher), so every rank raises the same
``HelixInputError`` and none waits on a peer; ``prepare`` also refuses prompts beyond the model's
positions and jobs this machine's memory cannot hold (``helix.runtime.limits``).

Nothing hangs and nothing is left behind: process-group setup and every collective time out after
``timeout_s``, so the peers of a dead or stopped rank fail within that; ``spawn`` then gives the rest
``grace_s`` to report and ends every remaining worker (SIGTERM, then SIGKILL: a stopped process
ignores SIGTERM), also on an error or KeyboardInterrupt in the launcher. A job has no deadline of its
own unless ``spawn(timeout_s=...)`` sets one; once one rank has returned, the others must return
within ``stall_s``. ``WorkerError.summary()`` (``helix.runtime.failures``) names the rank to blame,
its phase and the remedy in one line.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import signal
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime import failures as progress
from helix.runtime import limits, registry, reshard
from helix.runtime.comm import CollectiveRecord, Comm
from helix.runtime.decoder import DecodeOptions
from helix.runtime.failures import WorkerError  # noqa: F401  (re-exported: callers import it from here)


@dataclass(frozen=True)
class RunSpec:
    new_tokens: int
    options: DecodeOptions = field(default_factory=DecodeOptions)
    reshard: object = None  # helix.runtime.reshard.Reshard: re-shard the live KV mid-generation (llama)


RUNTIME_STRATEGIES = ("helix", "dp_ep")


@dataclass(frozen=True)
class Job:
    model: str
    layout: Layout  # Helix (DP = PP = 1, TPF x EP = N) or DP+EP (PP = 1, N = DP = EP, whole experts per rank)
    prompt_ids: torch.Tensor  # [B, T] int64, every request the same length
    runs: tuple[RunSpec, ...]
    timeout_s: float = 60.0  # process-group setup and each collective

    def __post_init__(self) -> None:
        # what any model needs; the family's check_layout adds the model's own limits once it is built
        layout = self.layout
        if not isinstance(layout, Layout):
            raise HelixInputError("layout", f"must be a helix.layout.Layout, got {type(layout).__name__}")
        if layout.strategy not in RUNTIME_STRATEGIES:
            raise HelixInputError("strategy", f"the runtime runs {' or '.join(RUNTIME_STRATEGIES)}, "
                                  f"got {layout.strategy!r}")
        if layout.pp != 1 or (layout.strategy == "helix" and layout.dp != 1):
            raise HelixInputError("layout", f"the runtime runs PP = 1 and Helix with DP = 1, got {layout.describe()}")
        if layout.strategy == "dp_ep" and layout.tpf != 1:  # its DP+EP MoE moves whole experts (moe.dp_ep_moe)
            raise HelixInputError("tpf", f"must be 1 under dp_ep (whole experts per rank, EP = N), got {layout.tpf}")


@dataclass(frozen=True)
class Payload:
    """What each worker receives: plain values and tensors (no transformers import needed)."""

    job: Job
    family: str
    arch: object
    state_dict: dict


@dataclass
class RunResult:
    tokens: torch.Tensor  # [B, new_tokens]
    kv_tokens: list[int]  # S_loc of every rank (gathered, unrecorded)
    prefill_s: float
    step_s: list[float]
    traffic: list[CollectiveRecord]
    phase_s: dict[str, float]
    logits: list[torch.Tensor] | None = None  # rank 0 only, with options.return_logits
    hidden: list[torch.Tensor] | None = None  # rank 0 only, with options.capture_hidden
    extras: dict = field(default_factory=dict)  # HelixDecoder.extras(), e.g. {"expert_loads": {step: [L_moe, E]}}


# ---------------------------------------------------------------- validation and model building


def validate(job: Job, world_size: int | None = None):
    """(registry entry, layout): raises HelixInputError for an unknown model, bad layout or world size.

    Model-independent only; the family's ``check_layout`` adds the model's checks once it is built.
    """
    entry = registry.get_model(job.model)
    layout = job.layout
    if world_size is not None and world_size != layout.num_gpus:
        width = "ep" if layout.strategy == "dp_ep" else "kvp*tpa"
        raise HelixInputError("world_size", f"must equal {width} (={layout.num_gpus}) for {layout.describe()}, "
                              f"got {world_size}")
    if job.prompt_ids.ndim != 2 or job.prompt_ids.shape[1] < 1:
        raise HelixInputError("prompt", f"must be [batch, tokens] with tokens >= 1, got {tuple(job.prompt_ids.shape)}")
    limits.check_timeout("timeout_s", job.timeout_s)
    return entry, layout


def prepare(job: Job) -> tuple[Payload, object]:
    """Validate and build the seeded model once; returns (payload for workers, the HF model)."""
    entry, layout = validate(job)
    fam = registry.family(entry.family)
    hf = entry.build()
    arch = fam.arch_from_hf_config(hf.config)
    fam.check_layout(layout, arch, job.model)
    state = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    (B, T), new = job.prompt_ids.shape, max(r.new_tokens for r in job.runs)
    limits.check_positions(T, new, getattr(hf.config, "max_position_embeddings", None), job.model)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", layout.num_gpus))  # under torchrun: the ranks on this node
    limits.check_memory(fam.model_spec(arch, job.model), layout.kvp, layout.tpa, local, B, T, new,
                        sum(v.numel() * v.element_size() for v in state.values()), dp=layout.dp)
    return Payload(job, entry.family, arch, state), hf


# ---------------------------------------------------------------- one rank


def run_job(rank: int, world_size: int, init_method: str, payload: Payload) -> list[RunResult]:
    """Everything one rank does for a job: validate, join the groups, shard, run every RunSpec."""
    job = payload.job
    progress.PROGRESS.rank = rank
    progress.mark("load")
    _, layout = validate(job, world_size)
    fam = registry.family(payload.family)
    fam.check_layout(layout, payload.arch, job.model)
    comm = Comm.create(layout, rank, world_size, init_method, timeout_s=job.timeout_s)
    try:
        decoder = fam.DECODER(payload.arch, payload.state_dict, comm, name=job.model)
        results = []
        for i, run in enumerate(job.runs):
            comm.traffic.records.clear()
            comm.phase_s.clear()
            gen, final = reshard.run_generation(decoder, comm, payload, run, fam.DECODER,  # final: after any re-shard
                                                lambda phase, step, i=i: progress.mark(phase, step, i))
            progress.mark("report", 0, i)
            results.append(RunResult(
                tokens=gen.tokens.cpu(), kv_tokens=_gather_ints(final.kv_tokens(), world_size),
                prefill_s=gen.prefill_s, step_s=gen.step_s, traffic=list(comm.traffic.records),
                phase_s=dict(comm.phase_s),
                logits=[t.cpu() for t in gen.logits] if rank == 0 and run.options.return_logits else None,
                hidden=[t.cpu() for t in gen.hidden] if rank == 0 and run.options.capture_hidden else None,
                extras=decoder.extras()))  # every rank: may use (unrecorded) collectives
        return results
    finally:
        Comm.destroy()


def _gather_ints(value: int, world_size: int) -> list[int]:
    """One int per rank, on every rank; bookkeeping outside the Helix step, so not recorded."""
    if world_size == 1:
        return [value]
    out = [None] * world_size
    dist.all_gather_object(out, value)
    return out


# ---------------------------------------------------------------- spawning CPU workers


def _entry(fn, rank: int, world_size: int, init_method: str, payload, results, phases=None) -> None:
    # the launcher owns the signals: its SIGTERM ends a worker silently; it answers the terminal's Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL), signal.signal(signal.SIGINT, signal.SIG_IGN)
    progress.PROGRESS.attach(phases, rank)
    try:
        progress.mark("spawn")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        # Plain pickle: results must not refer to this process's shared memory once it exits.
        results.put(("ok", rank, pickle.dumps(fn(rank, world_size, init_method, payload))))
    except BaseException as exc:  # reported to the launcher, rank by rank
        field_name = getattr(exc, "field", "")
        results.put(("error", rank, (type(exc).__name__, field_name, str(exc), traceback.format_exc())))


def _end(procs, grace_s: float = 2.0) -> None:
    """End every started worker: SIGTERM, ``grace_s`` to exit, then SIGKILL (a stopped process only
    dies of SIGKILL); joins with timeouts, so the launcher never waits on a child for ever."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            p.kill() if progress.process_state(p.pid) == "stopped" else p.terminate()
    deadline = time.monotonic() + grace_s
    for p in started:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in started:
        if p.is_alive():
            p.kill()
    for p in started:
        p.join(timeout=5)


def spawn(fn, world_size: int, payload, timeout_s: float | None = None, grace_s: float = 5.0,
          stall_s: float = 60.0, collective_timeout_s: float | None = None) -> list:
    """Run ``fn(rank, world_size, init_method, payload)`` in ``world_size`` fresh processes.

    Returns the per-rank results in rank order, or raises WorkerError: after the first failure the
    others get ``grace_s`` to report; after the first result the others get ``stall_s``; ``timeout_s``
    (None: none) bounds the whole job. Then every remaining worker is ended (``_end``).
    ``collective_timeout_s`` only words the failure summary.
    """
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    phases = ctx.Array("i", 3 * world_size, lock=False)  # (phase, step, run) per rank: failures.mark
    with tempfile.TemporaryDirectory(prefix="helix-") as tmp:
        init_method = f"file://{tmp}/store"
        procs = [ctx.Process(target=_entry, args=(fn, r, world_size, init_method, payload, results, phases),
                             daemon=True) for r in range(world_size)]
        start = time.monotonic()  # the job deadline counts the workers' start-up
        try:
            for p in procs:
                p.start()
            done, failures = _collect(procs, results, start, timeout_s, grace_s, stall_s)
        finally:
            _end(procs)
            results.cancel_join_thread()
        if failures:
            raise WorkerError(failures, progress.phases_of(phases, world_size), collective_timeout_s, tuple(done))
        return [done[r] for r in range(world_size)]


def _collect(procs, results, start: float, timeout_s: float | None, grace_s: float,
             stall_s: float) -> tuple[dict, dict]:
    """(results, failures) by rank, polling ``results`` until every rank has reported or a limit of ``spawn``
    passes; a rank still silent then is a failure: JobTimeout at the deadline, else Timeout with its state."""
    world_size = len(procs)
    done: dict[int, object] = {}
    failures: dict[int, tuple[str, str, str, str]] = {}
    first_failure = first_done = None
    why = ""
    while len(done) + len(failures) < world_size:
        now = time.monotonic()
        if timeout_s is not None and now - start > timeout_s:
            why = f"no result within {timeout_s:g} s (the job deadline)"
        elif first_failure is not None and now - first_failure > grace_s:
            why = "still running after another rank failed"
        elif first_done is not None and now - first_done > stall_s:
            why = f"no result {stall_s:g} s after rank {min(done)} finished"
        if why:
            break
        try:
            status, rank, value = results.get(timeout=0.2)
        except queue_module.Empty:
            for r, p in enumerate(procs):  # died without reporting (killed, crashed)
                if p.exitcode not in (None, 0) and r not in done and r not in failures:
                    failures[r] = ("WorkerDied", "", progress.exit_reason(p.exitcode), "")
            if failures and first_failure is None:
                first_failure = time.monotonic()
            continue
        if status == "ok":
            done[rank] = pickle.loads(value)
            first_done = first_done or time.monotonic()
        else:
            failures[rank] = value
            first_failure = first_failure or time.monotonic()
    for r, p in enumerate(procs):  # what the silent ones were doing, before they are ended
        if r not in done and r not in failures:
            state = progress.process_state(p.pid)
            kind = "JobTimeout" if why.endswith("(the job deadline)") else "Timeout"
            state = f"; process {state}" if state and kind == "Timeout" else ""
            failures[r] = (kind, "", why + state, "")
    return done, failures


def run_spawned(payload: Payload, timeout_s: float | None = None) -> list[list[RunResult]]:
    """Spawn one CPU worker per rank of the job's layout; returns [rank][run] results.

    ``timeout_s``: the whole job's deadline (None: none). A dead or stopped rank still ends the job
    within about ``job.timeout_s`` (its peers' collectives time out) plus a few seconds.
    """
    t = payload.job.timeout_s
    return spawn(run_job, payload.job.layout.num_gpus, payload, timeout_s=timeout_s, stall_s=t + 5.0,
                 collective_timeout_s=t)
