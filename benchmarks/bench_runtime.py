"""Decode-step time vs context length for Helix on this machine: KVP = 1, 2, 4 (TPA = 1), HOP-B off/on.

Usage: python benchmarks/bench_runtime.py [--contexts 1024 4096 8192] [--batch 4] [--steps 8]

For each KVP one set of CPU workers (gloo) loads ``bench-llama``, prefills each context (in chunks),
then times decode steps alternately without and with HOP-B (one chunk per request) on the same
cache, reporting the median step time of rank 0 and the kvp_all_to_all bytes one rank sends per
step (B * Q/TPA * (Hsz + 1) * 4 per layer: constant in S). On a 2-core CPU, KVP > 2 oversubscribes
the cores, so these figures show the code path's behaviour, not GPU speed-ups.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from helix.layout import Layout
from helix.runtime import registry
from helix.runtime.comm import Comm
from helix.runtime.decoder import DecodeOptions
from helix.runtime.launch import Job, RunSpec, prepare, spawn

MODEL = "bench-llama"


def _worker(rank: int, world_size: int, init_method: str, payload) -> list[dict]:
    job, contexts, steps = payload["payload"].job, payload["contexts"], payload["steps"]
    fam = registry.family(payload["payload"].family)
    comm = Comm.create(job.layout, rank, world_size, init_method, timeout_s=300)
    try:
        decoder = fam.DECODER(payload["payload"].arch, payload["payload"].state_dict, comm, name=MODEL)
        rows = []
        for S in contexts:
            prompt = job.prompt_ids[:, :S]
            plain = DecodeOptions(prefill_chunk_tokens=128)
            hopb = dataclasses.replace(plain, hopb_chunks=prompt.shape[0])
            out = decoder.prefill(prompt, plain)
            token = out.next_tokens
            times = {False: [], True: []}
            for i in range(2 * steps + 2):
                use_hopb = bool(i % 2)
                decoder.options = hopb if use_hopb else plain
                comm.traffic.records.clear()
                t0 = time.perf_counter()
                token = decoder.decode_step(token).next_tokens
                if i >= 2:  # the first pair warms up
                    times[use_hopb].append(time.perf_counter() - t0)
                if not use_hopb:
                    a2a = sum(c.n_bytes for c in comm.traffic.records if c.phase == "kvp_all_to_all")
            rows.append({"S": S, "plain_s": statistics.median(times[False]), "hopb_s": statistics.median(times[True]),
                         "a2a_bytes": a2a, "kv_tokens": decoder.kv_tokens()})
        return rows
    finally:
        Comm.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--kvp", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    prompt = torch.randint(0, 1000, (args.batch, max(args.contexts)), generator=torch.Generator().manual_seed(0))
    print(f"model {MODEL}, batch {args.batch}, TPA 1, {torch.get_num_threads()} CPU threads available; "
          f"median of {args.steps} decode steps, rank 0")
    print(f"{'KVP':>3} {'S':>7} {'S_loc':>6} {'step ms':>8} {'HOP-B ms':>9} {'a2a bytes/step':>15}")
    for kvp in args.kvp:
        payload, _ = prepare(Job(MODEL, Layout.helix(kvp=kvp), prompt, (RunSpec(2),)))
        t0 = time.perf_counter()
        rows = spawn(_worker, kvp, {"payload": payload, "contexts": args.contexts, "steps": args.steps},
                     timeout_s=3600)[0]
        for r in rows:
            print(f"{kvp:3d} {r['S']:7d} {r['kv_tokens']:6d} {1e3 * r['plain_s']:8.2f} {1e3 * r['hopb_s']:9.2f} "
                  f"{r['a2a_bytes']:15d}")
        print(f"    (KVP {kvp}: {time.perf_counter() - t0:.0f} s including prefill)")


if __name__ == "__main__":
    main()
