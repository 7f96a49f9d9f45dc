"""Timing on one device (torch worker code): CUDA events around calls, optionally replayed from one CUDA
graph as a serving engine launches them; on a CPU the shared ``time_call_s``. Operand rotation keeps
every timed call reading HBM instead of a warm L2."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from helix.validation.timing import robust_median_s, time_call_s


@dataclass
class Timer:
    """Mutable by design: it counts the graph captures that failed and keeps the eager time of the last
    call it timed, for the report beside each point."""

    device: str  # "cuda" or "cpu"
    graphs: bool = False  # CUDA: replay ``inner`` calls captured in one CUDA graph (as a serving engine does)
    graph_failures: int = 0
    last_eager_s: float = 0.0  # with graphs: the same call timed eagerly, launch by launch

    def _graphed(self, fn, inner: int):
        """One CUDA graph holding ``inner`` calls of fn; falls back to eager calls if capture fails."""
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(inner):
                    fn()
            return graph.replay
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: time it eagerly
            self.graph_failures += 1
            print(f"graph capture failed ({type(exc).__name__}: {str(exc)[:100]}); eager", file=sys.stderr)

            def eager():
                for _ in range(inner):
                    fn()

            return eager

    def time_s(self, fn, *, repeats: int = 10, warmup: int = 3, inner: int = 1) -> float:
        """Median seconds per call over ``repeats`` samples of ``inner`` back-to-back calls."""
        if self.device != "cuda":
            return robust_median_s(time_call_s(fn, repeats=repeats, warmup=warmup, inner=inner))
        for _ in range(warmup):
            fn()
        per_replay = 1
        self.last_eager_s = 0.0
        if self.graphs:
            self.last_eager_s = Timer(self.device).time_s(fn, repeats=repeats, warmup=0, inner=inner)
            fn, per_replay, inner = self._graphed(fn, inner), inner, 1
        torch.cuda.synchronize()
        samples = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3 / inner / per_replay)
        return robust_median_s(samples)


def rotating(fn, operand_sets):
    """A no-argument call of ``fn`` cycling over operand tuples (each call reads a different copy)."""
    state = {"i": 0}

    def call():
        args = operand_sets[state["i"] % len(operand_sets)]
        state["i"] += 1
        return fn(*args)

    return call


def copies(nbytes: float, flush_bytes: float) -> int:
    """Operand copies to rotate so that consecutive calls never hit a warm L2."""
    return int(min(8, max(1, math.ceil(flush_bytes / max(nbytes, 1)))))
