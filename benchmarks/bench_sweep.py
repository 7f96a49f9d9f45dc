"""Wall time and points/s of each model's full 1M-context sweep (<= 64 GPUs, every strategy) on the
previous model (plain roofline, ``--engine none``) beside the calibrated op model, and of
``helix reproduce`` (full and --quick).

    .venv/bin/python benchmarks/bench_sweep.py [--repeat 3] [--skip-reproduce] [--skip-domains]

Targets: the DeepSeek-R1 1M sweep (>= 100,000 points) in < 0.5 s on 2 cores with the calibrated op
model (issue 10; < 2 s before); ``helix reproduce`` < 60 s; beyond one NVLink domain (issue 12), the
DeepSeek-R1 1M sweeps to 576 GPUs (8 GB200 NVL72 racks) and to 512 GPUs (64 HGX H200 nodes) each < 60 s
(the search alone, every rank order; the CLI adds the CSV).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from helix import load_hardware, load_model, search
from helix.commands.reproduce import reproduce

MODELS = ("deepseek-r1", "llama-3.1-405b", "llama-405b-paper")


def _best_sweep(model, hw, repeat: int):
    best, sw = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        sw = search.sweep(model, hw, 10**6)
        best = min(best, time.perf_counter() - t)
    return best, sw


def bench_sweeps(repeat: int) -> None:
    calibrated = load_hardware("gb200-nvl72")
    roofline = load_hardware("gb200-nvl72", engine="none")
    print(f"{'model':<20}{'points':>10}{'roofline s':>12}{'calibrated s':>14}{'ratio':>7}{'points/s':>12}"
          f"{'frontier s':>12}  target")
    for name in MODELS:
        model = load_model(name)
        old, _ = _best_sweep(model, roofline, repeat)
        new, sw = _best_sweep(model, calibrated, repeat)
        t = time.perf_counter()
        search.frontiers(sw.points)
        search.helix_vs_baseline(sw.points)
        front = time.perf_counter() - t
        target = "< 0.5 s" if name == "deepseek-r1" else "< 2 s"
        ok = new < (0.5 if name == "deepseek-r1" else 2.0)
        print(f"{name:<20}{len(sw.points):>10,}{old:>12.3f}{new:>14.3f}{new / old:>7.2f}{len(sw.points) / new:>12,.0f}"
              f"{front:>12.3f}  {'ok' if ok else 'MISSED'} ({target})")


def bench_domains() -> None:
    model = load_model("deepseek-r1")
    for hw_name, max_gpus in (("gb200-nvl72", 576), ("h200", 512)):
        hw = load_hardware(hw_name)
        t = time.perf_counter()
        sw = search.sweep(model, hw, 10**6, max_gpus=max_gpus)
        wall = time.perf_counter() - t
        layouts = sum(sw.layouts_per_strategy.values())
        print(f"deepseek-r1 1M on {max_gpus} x {hw_name:<12}{wall:>8.1f} s  {len(sw.points):,} points, {layouts:,} "
              f"layouts and rank orders  {'ok' if wall < 60 else 'MISSED'} (< 60 s)")


def bench_reproduce() -> None:
    for quick in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            data = reproduce(Path(tmp), quick=quick, log=lambda msg: None)
            wall = time.perf_counter() - t
        points = sum(data["points_evaluated"].values())
        label = "helix reproduce --quick" if quick else "helix reproduce"
        print(f"{label:<26}{wall:>8.1f} s  main sweeps {points:,} points  "
              f"{'ok' if quick or wall < 60 else 'MISSED'}{'' if quick else ' (< 60 s)'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-reproduce", action="store_true")
    ap.add_argument("--skip-domains", action="store_true")
    args = ap.parse_args()
    bench_sweeps(args.repeat)
    if not args.skip_domains:
        bench_domains()
    if not args.skip_reproduce:
        bench_reproduce()


if __name__ == "__main__":
    main()
