"""Process groups from the Layout, and explicit collectives that record every byte they move.

The runtime never calls ``torch.distributed`` collectives directly: it calls ``Comm.all_reduce``,
``Comm.all_to_all``, ``Comm.all_to_all_v`` (uneven rows) and ``Comm.all_gather`` with a *named*
group (``GROUP_NAMES``: ``"tpa"``, ``"kvp"``, ``"attention"``, ``"stage"``, ``"tpf"``, ``"ep"``) and
the simulator's phase name. Each call appends one
``CollectiveRecord`` to the ``TrafficRecorder`` before it runs, in the simulator's byte convention,
so a decode step's records can be compared one for one with the simulator's messages of that step
(helix.validation.traffic; the runtime only counts):

- all_reduce: n = the full buffer;
- all_gather: n = the output (group size x the input);
- all_to_all, all_to_all_v: n = the rank's whole send buffer, its own chunk included.

A collective over a group of one rank is not issued and not recorded (the simulator omits it too).

Groups are built from ``helix.layout.Layout`` (PP = 1): attention rank r = (dp_rank * KVP +
kvp_rank) * TPA + tpa_rank, FFN rank r = ep_rank * TPF + tpf_rank. Every rank walks every group of
every family in the same order, as ``torch.distributed.new_group`` requires, and keeps the ones it
belongs to; a rank list already created for an earlier family reuses that process group (for a dense
Helix model "tpf" is "stage"; for TPA = 1 "kvp" is "attention"), and one-rank groups get none. The backend is NCCL when
every local rank has its own GPU and gloo otherwise (``HELIX_DEVICE=cpu`` forces gloo). Process-group
setup and every collective time out (``timeout_s``) instead of hanging.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from helix.layout import Layout

GROUP_NAMES = ("tpa", "kvp", "attention", "stage", "tpf", "ep")


@dataclass(frozen=True, slots=True)
class CollectiveRecord:
    step: str  # "prefill", "decode0", "decode1", ...
    phase: str  # simulator term, e.g. "kvp_all_to_all"
    kind: str  # all_reduce | all_to_all | all_gather (all_to_all_v records as all_to_all)
    group_size: int
    n_bytes: int  # the simulator's convention (see module docstring)


@dataclass
class TrafficRecorder:
    """Every collective issued, labelled with the step it belongs to."""

    step: str = "setup"
    records: list[CollectiveRecord] = field(default_factory=list)

    def add(self, phase: str, kind: str, group_size: int, n_bytes: int) -> None:
        self.records.append(CollectiveRecord(self.step, phase, kind, group_size, n_bytes))

    def for_step(self, step: str) -> list[CollectiveRecord]:
        return [r for r in self.records if r.step == step]

    def per_phase(self, step: str) -> dict[str, dict]:
        """{phase: {kind, group_size, calls, n_bytes (total), n_bytes_per_call (list)}} for one step."""
        out: dict[str, dict] = {}
        for r in self.for_step(step):
            entry = out.setdefault(r.phase, {"kind": r.kind, "group_size": r.group_size, "calls": 0,
                                             "n_bytes": 0, "n_bytes_per_call": []})
            entry["calls"] += 1
            entry["n_bytes"] += r.n_bytes
            entry["n_bytes_per_call"].append(r.n_bytes)
        return out


def default_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def default_device(local_rank: int, local_world_size: int) -> torch.device:
    """cuda:local_rank when CUDA gives every local rank its own GPU, else CPU (the same choice on all ranks)."""
    if os.environ.get("HELIX_DEVICE") == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available() and local_world_size <= torch.cuda.device_count():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class Comm:
    """This rank's view of the layout: its coordinates, its named groups, recorded collectives."""

    def __init__(self, layout: Layout, rank: int, device: torch.device, groups: dict[str, object],
                 group_sizes: dict[str, int]):
        self.layout = layout
        self.rank = rank
        self.device = device
        _, self.dp_rank, self.kvp_rank, self.tpa_rank = layout.attention_coords(rank)
        _, _, self.ep_rank, self.tpf_rank = layout.ffn_coords(rank)  # dense Helix: EP = 1, tpf_rank == rank
        self.stage_rank = rank % layout.gpus_per_stage
        self._groups = groups
        self.group_sizes = group_sizes
        self.traffic = TrafficRecorder()
        self.phase_s: dict[str, float] = defaultdict(float)
        # (phase, entry, exit) of every blocking collective, time.perf_counter() seconds: on Linux the
        # system-wide monotonic clock, so ranks on one host can find the last to arrive at each call.
        self.collective_spans: list[tuple[str, float, float]] = []

    # ---- setup
    @classmethod
    def create(cls, layout: Layout, rank: int, world_size: int, init_method: str = "env://",
               timeout_s: float = 60.0, device: torch.device | None = None) -> Comm:
        """Join the process group and build every named group of ``layout`` (call on every rank)."""
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        device = device or default_device(int(os.environ.get("LOCAL_RANK", rank)), local_world)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = timedelta(seconds=timeout_s)
        if world_size > 1 and not dist.is_initialized():  # one rank needs no process group
            dist.init_process_group(default_backend(device), init_method=init_method, rank=rank,
                                    world_size=world_size, timeout=timeout)
        families = {"tpa": layout.tpa_groups(), "kvp": layout.kvp_groups(),
                    "attention": layout.attention_groups(), "stage": layout.stage_groups(),
                    "tpf": layout.tpf_groups(), "ep": layout.ep_groups()}
        created: dict[tuple[int, ...], object] = {}
        groups, sizes = {}, {}
        for name in GROUP_NAMES:  # same order on every rank
            for ranks in families[name]:
                key = tuple(ranks)
                if key not in created:  # one process group per distinct rank list; none for one rank
                    multi = world_size > 1 and len(ranks) > 1
                    created[key] = dist.new_group(ranks, timeout=timeout) if multi else None
                if rank in ranks:
                    groups[name], sizes[name] = created[key], len(ranks)
        return cls(layout, rank, device, groups, sizes)

    @staticmethod
    def destroy() -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- timing of named phases (for the demo's breakdown; no collectives)
    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_s[name] += time.perf_counter() - t0

    @contextmanager
    def _collective(self, name: str, blocking: bool = True):
        """``phase`` for a collective; a blocking call also leaves its span in ``collective_spans``."""
        t0 = time.perf_counter()
        with self.phase(name):
            yield
        if blocking:
            self.collective_spans.append((name, t0, time.perf_counter()))

    # ---- collectives: explicit, on named groups, recorded
    def all_reduce(self, tensor: torch.Tensor, group: str, phase: str, record: bool = True) -> torch.Tensor:
        """In-place sum over ``group``; n = the whole buffer. ``record=False`` only for bookkeeping."""
        size = self.group_sizes[group]
        if size == 1:
            return tensor
        if record:
            self.traffic.add(phase, "all_reduce", size, tensor.numel() * tensor.element_size())
        with self._collective(phase):
            dist.all_reduce(tensor, group=self._groups[group])
        return tensor

    def all_to_all(self, send: torch.Tensor, group: str, phase: str, async_op: bool = False):
        """Chunk j of ``send`` (split on dim 0) goes to group rank j; returns (received, work or None)."""
        size = self.group_sizes[group]
        if size == 1:
            return send, None
        self.traffic.add(phase, "all_to_all", size, send.numel() * send.element_size())
        recv = torch.empty_like(send)
        with self._collective(phase, blocking=not async_op):
            work = dist.all_to_all_single(recv, send, group=self._groups[group], async_op=async_op)
        return recv, work

    def all_to_all_v(self, send: torch.Tensor, send_rows: list[int], recv_rows: list[int], group: str,
                     phase: str) -> torch.Tensor:
        """Uneven all-to-all of rows: ``send_rows[j]`` rows of ``send`` (in group rank order) go to group
        rank j, ``recv_rows[j]`` rows come from it; returns [sum(recv_rows), *send.shape[1:]].

        n = the whole send buffer (recorded as ``all_to_all``). The caller must know ``recv_rows``
        (e.g. from a count exchange with ``all_to_all``).
        """
        size = self.group_sizes[group]
        if size == 1:
            return send
        self.traffic.add(phase, "all_to_all", size, send.numel() * send.element_size())
        recv = send.new_empty((sum(recv_rows), *send.shape[1:]))
        with self._collective(phase):
            dist.all_to_all_single(recv, send.contiguous(), recv_rows, send_rows, group=self._groups[group])
        return recv

    def all_gather(self, tensor: torch.Tensor, group: str, phase: str, record: bool = True) -> torch.Tensor:
        """[G, *tensor.shape], group rank order; n = the output. ``record=False`` only for debug gathers."""
        size = self.group_sizes[group]
        if size == 1:
            return tensor.unsqueeze(0)
        out = [torch.empty_like(tensor) for _ in range(size)]
        if record:
            self.traffic.add(phase, "all_gather", size, size * tensor.numel() * tensor.element_size())
        with self._collective(phase):
            dist.all_gather(out, tensor.contiguous(), group=self._groups[group])
        return torch.stack(out)
