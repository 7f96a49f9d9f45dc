"""``helix run``: greedy Helix decoding of a registry model on torch.distributed, checked against HF.

Run plainly, it validates its arguments, builds the model once and spawns kvp*tpa CPU workers
(gloo). Under ``torchrun`` (RANK / WORLD_SIZE set) every rank builds the same seeded model and rank 0
prints. The report: per-step decode latency, the KV tokens each rank holds, the bytes of every
collective per decode step beside the simulator's formula (helix.cost.messages), and whether the
tokens equal Hugging Face ``generate`` on one device. With ``--hopb`` the run is made without and
with HOP-B and both step times are shown. The last line is compact JSON.
"""

from __future__ import annotations

import json
import os
import statistics

import torch

from helix.errors import HelixInputError
from helix.runtime.decoder import DecodeOptions
from helix.runtime.kv_cache import OWNERSHIP_RULES
from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, run_job, run_spawned


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run Helix decoding on torch.distributed and check it against HF",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-llama", help="runtime model preset (default tiny-llama)")
    p.add_argument("--kvp", type=int, default=2, help="KV-parallel width KVP (default 2)")
    p.add_argument("--tpa", type=int, default=1, help="attention tensor-parallel width TPA (default 1)")
    p.add_argument("--batch", type=int, default=4, help="requests decoded together B (default 4)")
    p.add_argument("--prompt-len", type=int, default=256, help="prompt tokens per request (default 256)")
    p.add_argument("--new-tokens", type=int, default=16, help="tokens to generate per request (default 16)")
    p.add_argument("--hopb", action="store_true", help="also run with HOP-B (one chunk per request) and compare")
    p.add_argument("--hopb-chunks", type=int, default=None, help="HOP-B chunks (default: one per request)")
    p.add_argument("--block-tokens", type=int, default=16, help="KV block size for staged concatenation")
    p.add_argument("--ownership", default="round_robin", choices=OWNERSHIP_RULES, help="KV ownership rule")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt")
    p.add_argument("--timeout-s", type=float, default=60.0, help="process-group setup and collective timeout")
    p.set_defaults(func=handle)


def _positive(field: str, value: int) -> int:
    if value < 1:
        raise HelixInputError(field, f"must be >= 1, got {value}")
    return value


def handle(args) -> int:
    for name in ("kvp", "tpa", "batch", "prompt_len", "new_tokens", "block_tokens"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.new_tokens < 2:
        raise HelixInputError("--new-tokens", f"must be >= 2 (prefill, then decode steps), got {args.new_tokens}")
    chunks = args.hopb_chunks or args.batch
    base = DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership)
    runs = [RunSpec(args.new_tokens, base)]
    if args.hopb:
        runs.append(RunSpec(args.new_tokens, DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership,
                                                           hopb_chunks=_positive("--hopb-chunks", chunks))))
    prompt = _prompt(args)
    job = Job(args.model, args.kvp, args.tpa, prompt, tuple(runs), timeout_s=args.timeout_s)
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if under_torchrun:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        payload, hf = prepare(job)
        results = run_job(rank, world, "env://", payload)
        if rank != 0:
            return 0
        launcher = f"torchrun, {world} ranks"
    else:
        payload, hf = prepare(job)
        try:
            results = run_spawned(payload, timeout_s=max(120.0, 4 * args.timeout_s))[0]
        except WorkerError as exc:
            if exc.input_error() is not None:
                raise exc.input_error() from None
            raise
        launcher = f"{job.layout.num_gpus} spawned CPU workers"
    return _report(args, job, payload, hf, results, launcher)


def _prompt(args) -> torch.Tensor:
    from helix.runtime.registry import get_model

    get_model(args.model)  # unknown model: a clear error before anything is built
    g = torch.Generator().manual_seed(args.seed)
    return torch.randint(0, 100, (args.batch, args.prompt_len), generator=g)  # ids < every preset's V


def _report(args, job, payload, hf, results, launcher: str) -> int:
    from helix.cost.messages import step_messages
    from helix.runtime.registry import family
    from helix.specs.precision import PrecisionSpec

    layout, base = job.layout, results[0]
    with torch.no_grad():
        reference = hf.generate(job.prompt_ids, max_new_tokens=args.new_tokens, do_sample=False,
                                min_new_tokens=args.new_tokens)[:, job.prompt_ids.shape[1]:]
    match = all(torch.equal(r.tokens, reference) for r in results)
    print(f"helix run: {args.model}, {layout.describe()}, {launcher}, batch {args.batch}, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, KV {args.ownership} (block {args.block_tokens})")
    step_ms = [1e3 * s for s in base.step_s]
    print(f"prefill ms: {1e3 * base.prefill_s:.1f}")
    print("decode step ms (rank 0): " + " ".join(f"{t:.1f}" for t in step_ms))
    mean_ms = statistics.mean(step_ms) if step_ms else float("nan")
    print(f"  mean {mean_ms:.2f}  median {statistics.median(step_ms) if step_ms else float('nan'):.2f}")
    print("KV tokens per rank (S_loc): " + " ".join(f"r{r}={n}" for r, n in enumerate(base.kv_tokens)))
    spec = family(payload.family).model_spec(payload.arch, args.model)
    expected = {m.phase: m for m in step_messages(spec, PrecisionSpec.uniform("fp32"), "helix", layout.tpa,
                                                  layout.kvp, 1, layout.tpf, 1, 1, args.batch)}
    traffic = _per_phase(base, "decode0")
    print(f"{'collective (decode step 0)':28} {'kind':11} {'group':>5} {'calls':>5} {'bytes/step':>11} "
          f"{'simulator':>11}  match")
    rows, exact = [], True
    for phase, m in expected.items():
        calls, group = int(m.calls_per_step), int(m.group_size)
        want = int(m.n_bytes * calls) if group > 1 and calls > 0 else 0
        got = traffic.get(phase, (0, 0))
        ok = got == ((calls if want else 0), want)
        exact &= ok
        if want or got[0]:
            print(f"{phase:28} {m.kind:11} {group:5d} {got[0]:5d} {got[1]:11d} {want:11d}  {'yes' if ok else 'NO'}")
            rows.append({"phase": phase, "kind": m.kind, "group": group, "calls": got[0], "bytes": got[1],
                         "simulator_bytes": want})
    extra = set(traffic) - set(expected)
    exact &= not extra
    summary = {"model": args.model, "kvp": layout.kvp, "tpa": layout.tpa, "batch": args.batch,
               "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "step_ms_mean": round(mean_ms, 3),
               "kv_tokens_per_rank": base.kv_tokens, "collectives": rows, "traffic_matches_simulator": exact,
               "tokens_match_hf": match}
    if args.hopb:
        hopb_ms = statistics.mean(1e3 * s for s in results[1].step_s) if results[1].step_s else float("nan")
        same = torch.equal(results[1].tokens, base.tokens)
        print(f"HOP-B: decode step mean {mean_ms:.2f} ms without, {hopb_ms:.2f} ms with "
              f"({args.hopb_chunks or args.batch} chunks); same tokens: {'yes' if same else 'NO'}")
        summary.update(step_ms_mean_hopb=round(hopb_ms, 3), hopb_same_tokens=same)
    print(f"tokens match Hugging Face generate (single device): {'yes' if match else 'NO'}")
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if match and exact else 1


def _per_phase(result, step: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in result.traffic:
        if r.step == step:
            calls, n = out.get(r.phase, (0, 0))
            out[r.phase] = (calls + 1, n + r.n_bytes)
    return out
