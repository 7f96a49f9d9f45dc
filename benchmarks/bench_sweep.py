"""Wall time and points/s of each model's full 1M-context sweep (<= 64 GPUs, every strategy), and of
``helix reproduce`` (full and --quick).

    .venv/bin/python benchmarks/bench_sweep.py [--repeat 3] [--skip-reproduce]

Targets (issue 3): >= 100,000 points per model in < 2 s; ``helix reproduce`` < 5 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from helix import load_hardware, load_model, search
from helix.commands.reproduce import reproduce

MODELS = ("deepseek-r1", "llama-3.1-405b", "llama-405b-paper")


def bench_sweeps(repeat: int) -> None:
    hw = load_hardware("gb200-nvl72")
    print(f"{'model':<20}{'points':>10}{'best s':>9}{'points/s':>14}{'frontier s':>12}  target")
    for name in MODELS:
        model = load_model(name)
        best, sw = float("inf"), None
        for _ in range(repeat):
            t = time.perf_counter()
            sw = search.sweep(model, hw, 10**6)
            best = min(best, time.perf_counter() - t)
        t = time.perf_counter()
        search.frontiers(sw.points)
        search.helix_vs_baseline(sw.points)
        front = time.perf_counter() - t
        ok = len(sw.points) >= 100_000 and best < 2.0
        print(f"{name:<20}{len(sw.points):>10,}{best:>9.3f}{len(sw.points) / best:>14,.0f}{front:>12.3f}  "
              f"{'ok' if ok else 'MISSED'} (>= 100,000 points in < 2 s)")


def bench_reproduce() -> None:
    for quick in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            data = reproduce(Path(tmp), quick=quick, log=lambda msg: None)
            wall = time.perf_counter() - t
        points = sum(data["points_evaluated"].values())
        label = "helix reproduce --quick" if quick else "helix reproduce"
        print(f"{label:<26}{wall:>8.1f} s  main sweeps {points:,} points  "
              f"{'ok' if quick or wall < 300 else 'MISSED'}{'' if quick else ' (< 300 s)'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-reproduce", action="store_true")
    args = ap.parse_args()
    bench_sweeps(args.repeat)
    if not args.skip_reproduce:
        bench_reproduce()


if __name__ == "__main__":
    main()
