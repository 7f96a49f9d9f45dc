"""The runtime's local decode attention: one eager pass over the shard against split-KV blocks.

Usage: python benchmarks/bench_attention.py [--contexts 4096 16384 65536] [--batch 4] [--repeats 7]

GQA decode shapes of bench-llama (K = 4 KV heads, g = 2 query heads each, Hsz = 64, fp32), one
thread. For each context, ``helix.runtime.attention.local_attention`` with ``block_tokens=None``
(one pass) and with the default ``KV_BLOCK_TOKENS``, timed alternately (median of ``repeats``), as
K+V bytes read per second; the ratio is split-KV over one pass, measured side by side. Both give the
same output (checked).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from helix.runtime.attention import KV_BLOCK_TOKENS, local_attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    kv_heads, group, head_dim = 4, 2, 64
    print(f"one thread, B={args.batch}, K={kv_heads}, g={group}, Hsz={head_dim}, fp32; split-KV blocks of "
          f"{KV_BLOCK_TOKENS} tokens")
    print(f"{'S':>7} {'K+V MiB':>8} {'one pass GB/s':>14} {'split-KV GB/s':>14} {'ratio':>6}")
    for s in args.contexts:
        k, v = torch.randn(args.batch, kv_heads, s, head_dim), torch.randn(args.batch, kv_heads, s, head_dim)
        q = torch.randn(args.batch, 1, kv_heads * group, head_dim)
        q_pos, k_pos = torch.tensor([s]), torch.arange(s)
        variants = {"one": None, "split": KV_BLOCK_TOKENS}
        outs = {n: local_attention(q, k, v, q_pos, k_pos, head_dim**-0.5, block_tokens=b)[0]
                for n, b in variants.items()}
        torch.testing.assert_close(outs["one"], outs["split"], rtol=1e-5, atol=1e-5)
        times: dict[str, list[float]] = {n: [] for n in variants}
        for _ in range(args.repeats):
            for name, block in variants.items():
                t0 = time.perf_counter()
                local_attention(q, k, v, q_pos, k_pos, head_dim**-0.5, block_tokens=block)
                times[name].append(time.perf_counter() - t0)
        n_bytes = 2 * k.numel() * k.element_size()
        rate = {n: n_bytes / statistics.median(t) / 1e9 for n, t in times.items()}
        print(f"{s:>7} {n_bytes / 2**20:>8.0f} {rate['one']:>14.2f} {rate['split']:>14.2f} "
              f"{rate['split'] / rate['one']:>6.2f}")


if __name__ == "__main__":
    main()
