"""Decode-step model throughput: one vectorised call over >= 1,000,000 (layout, batch) points vs the
scalar path (``simulate``) in a Python loop on a sample of the same points. Prints points/s and the ratio.

    python benchmarks/bench_simulate.py [--points 1000000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from helix import Layout, load_hardware, load_model, simulate
from helix.specs import PrecisionSpec
from helix.step import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=2_000)
    args = ap.parse_args()
    model, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    rng = np.random.default_rng(0)
    n = args.points
    kvp = 2 ** rng.integers(0, 7, n)  # 1..64
    ep = np.minimum(2 ** rng.integers(0, 4, n), kvp)  # 1..8, dividing kvp
    tpf = kvp // ep
    batch = rng.integers(1, 1025, n)
    ones = np.ones(n, dtype=np.int64)
    context = np.full(n, 10**6)

    times = []
    for _ in range(4):  # the first call pays numpy's first-touch page faults: report the median of the rest
        t0 = time.perf_counter()
        vec = evaluate(model, hw, PrecisionSpec(), "helix", ones, kvp, ones, tpf, ep, ones, batch, context)
        times.append(time.perf_counter() - t0)
    vec_s = float(np.median(times[1:]))
    print(f"first vectorised call (cold): {times[0]:.3f} s")

    m = min(args.sample, n)
    t0 = time.perf_counter()
    for i in range(m):
        r = simulate(model, hw, Layout.helix(kvp=int(kvp[i]), tpa=1, tpf=int(tpf[i]), ep=int(ep[i])), int(batch[i]),
                     10**6)
        # equal to the last bits: numpy's SIMD pow on large arrays may differ from the scalar one by an ulp
        assert abs(float(r.ttl_s) - vec.ttl_s[i]) <= 1e-12 * vec.ttl_s[i]
    loop_s = time.perf_counter() - t0

    vec_rate, loop_rate = n / vec_s, m / loop_s
    print(f"vectorised : {n:>9,} points in {vec_s:7.3f} s = {vec_rate:>12,.0f} points/s")
    print(f"scalar loop: {m:>9,} points in {loop_s:7.3f} s = {loop_rate:>12,.0f} points/s")
    print(f"ratio      : {vec_rate / loop_rate:,.0f}x per point (same results, checked on the sample)")


if __name__ == "__main__":
    main()
