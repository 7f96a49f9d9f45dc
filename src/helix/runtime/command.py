"""``helix run``: greedy Helix decoding of a registry model (or a local HF checkpoint, ``--checkpoint DIR``
with ``--prompt TEXT``) on torch.distributed, checked against HF.

Run plainly, it validates its arguments, builds the model once and spawns one CPU worker (gloo) per
rank of the layout. Under ``torchrun`` (RANK / WORLD_SIZE set) every rank builds the same seeded
model and rank 0 prints. The report: per-step decode latency, the KV tokens each rank holds, the
bytes of every collective per decode step beside the simulator's formula (helix.cost.messages),
the expert load of MoE models, and whether the tokens equal Hugging Face ``generate`` on one device.
With ``--hopb`` the run is made without and with HOP-B and both step times are shown. The last line
is compact JSON (``--json``: that line only).

Layouts (the flags of ``helix simulate``): ``--strategy helix`` (default) is KVP x TPA attention
with the FFN as TPF x EP on the same N = KVP x TPA ranks (``--tpf``/``--ep``, TPF x EP = N); ``--strategy
dp_ep`` is the DP+EP baseline on ``--gpus`` N ranks (DP = EP = N; MoE models only).

Limits: ``--timeout-s`` (default 60 s, 1 s to 1 day) bounds process-group setup and each collective,
which is how a dead or stopped peer is found: a failed rank ends the job within about --timeout-s
+ 10 s, and no worker process is left behind. ``--job-timeout-s`` bounds the whole job (default: no
limit; a healthy run is never cut short). Exit codes: 0 the tokens and traffic match, 1 they do not,
2 bad input (one line, nothing spawned), 3 the run failed (one line: the rank, its phase, the
remedy; ``HELIX_TRACEBACK=1`` adds every rank's traceback), 130 interrupted.

This module is imported when the ``helix`` command starts: torch is imported inside the handler only,
so ``helix simulate`` does not pay for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys

from helix.errors import HelixInputError
from helix.flags import integer
from helix.flags import seed as seed_flag
from helix.layout import Layout
from helix.runtime.run_args import check_combinations, layout_args, positive, resolve_source

# The DP+EP combine sends back what each rank received: per rank it depends on the routing, and
# helix.cost.messages gives the mean over the EP group. Checked as that mean when every rank is known.
ROUTING_DEPENDENT = ("moe_combine_all_to_all",)


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run Helix decoding on torch.distributed and check it against HF",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="runtime model preset (default tiny-llama; "
                   "tiny-deepseek: MLA + MoE; tiny-deepseek-v32: with DSA sparse attention)")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="a local Hugging Face checkpoint instead "
                   "(config.json, *.safetensors, tokenizer; model_type llama, deepseek_v3 or deepseek_v32)")
    p.add_argument("--prompt", default=None, help="prompt text, tokenized by the checkpoint's tokenizer "
                   "(--checkpoint; repeated --batch times, default batch 1); the output is decoded to text")
    p.add_argument("--strategy", default="helix", choices=("helix", "dp_ep"),
                   help="helix (default), or dp_ep: the DP+EP baseline (MoE models only)")
    p.add_argument("--gpus", type=integer, default=None,
                   help="N ranks: the DP+EP width (default 2); for helix N = KVP x TPA (KVP = N/TPA if --kvp is unset)")
    p.add_argument("--kvp", type=integer, default=None, help="KV-parallel width KVP (helix; default 2)")
    p.add_argument("--tpa", type=integer, default=None, help="attention tensor-parallel width TPA (helix; default 1)")
    p.add_argument("--tpf", type=integer, default=None, help="FFN tensor-parallel width TPF (helix; TPF x EP = N)")
    p.add_argument("--ep", type=integer, default=None,
                   help="expert-parallel width EP (helix: default N/TPF, or 1; dp_ep: EP = N)")
    p.add_argument("--batch", type=integer, default=None, help="requests decoded together B (default 4; "
                   "1 with --prompt)")
    p.add_argument("--prompt-len", type=integer, default=None, help="random prompt tokens per request (default 256)")
    p.add_argument("--new-tokens", type=integer, default=16, help="tokens to generate per request (default 16)")
    p.add_argument("--hopb", action="store_true", help="also run with HOP-B (one chunk per request) and compare")
    p.add_argument("--hopb-chunks", type=integer, default=None, help="HOP-B chunks (default: one per request)")
    p.add_argument("--block-tokens", type=integer, default=16, help="KV block size for staged concatenation")
    p.add_argument("--ownership", default="round_robin",
                   help="KV ownership rule: round_robin (default), contiguous or last_rank")
    p.add_argument("--reshard-at", type=integer, default=None,
                   help="re-shard the live KV cache before this decode step (llama; with --reshard-kvp)")
    p.add_argument("--reshard-kvp", type=integer, default=None, help="KVP after the re-shard (same N ranks)")
    p.add_argument("--reshard-tpa", type=integer, default=None, help="TPA after the re-shard (default N/--reshard-kvp)")
    p.add_argument("--seed", type=seed_flag, default=None, help="seed of the random prompt (default 0)")
    p.add_argument("--timeout-s", type=float, default=60.0,
                   help="seconds a rank waits for its peers in process-group setup and in each collective "
                        "(default 60; 1 to 86400): a dead or stopped rank ends the job within about this + 10 s")
    p.add_argument("--job-timeout-s", type=float, default=None,
                   help="wall-clock limit of the whole job in seconds (default: no limit; spawned "
                        "workers only: under torchrun use torchrun's own limits)")
    p.add_argument("--json", action="store_true", help="print only the JSON summary object")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from helix.runtime import reshard
    from helix.runtime.decoder import DecodeOptions  # torch: imported here, not when ``helix`` starts
    from helix.runtime.kv_cache import OWNERSHIP_RULES
    from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, run_job, run_spawned
    from helix.runtime.limits import check_job_timeout, check_prompt, check_timeout

    resolve_source(args)
    check_timeout("--timeout-s", args.timeout_s)
    job_timeout = check_job_timeout("--job-timeout-s", args.job_timeout_s)
    for name in ("batch", "prompt_len", "new_tokens", "block_tokens"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.new_tokens < 2:
        raise HelixInputError("--new-tokens", f"must be >= 2 (prefill, then decode steps), got {args.new_tokens}")
    if args.ownership not in OWNERSHIP_RULES:
        raise HelixInputError("--ownership", f"unknown rule {args.ownership!r}; allowed: {', '.join(OWNERSHIP_RULES)}")
    kvp, tpa, ep, strategy = layout_args(args)
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    check_combinations(args, kvp, strategy, under_torchrun)
    chunks = args.hopb_chunks or args.batch
    base = DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership)
    runs = [RunSpec(args.new_tokens, base, reshard.from_args(args, kvp, tpa, strategy))]
    if args.hopb:
        runs.append(RunSpec(args.new_tokens, DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership,
                                                           hopb_chunks=chunks)))
    if args.prompt is None:
        check_prompt(args.batch, args.prompt_len)
    prompt, tok = _prompt(args)
    layout = Layout.dp_ep(ep) if strategy == "dp_ep" else Layout.helix(kvp=kvp, tpa=tpa, ep=ep)
    job = Job(args.model, layout, prompt, tuple(runs), timeout_s=args.timeout_s)
    if under_torchrun:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        payload, hf = prepare(job)
        try:
            per_rank = [run_job(rank, world, "env://", payload)]  # this rank's only
        except HelixInputError:
            raise
        except Exception as exc:  # this rank's failure, one line (torchrun reports the others)
            import traceback

            from helix.runtime import failures

            error = WorkerError({rank: (type(exc).__name__, "", str(exc), traceback.format_exc())},
                                {rank: failures.PROGRESS.phase()}, args.timeout_s)
            return _failed(error, f"helix run (rank {rank})")
        if rank != 0:
            return 0
        launcher = f"torchrun, {world} ranks"
    else:
        payload, hf = prepare(job)
        try:
            per_rank = run_spawned(payload, timeout_s=job_timeout)
        except WorkerError as exc:
            if exc.input_error() is not None:
                raise exc.input_error() from None
            return _failed(exc)  # an interrupt propagates to helix.cli; launch.spawn has ended the workers
        launcher = f"{job.layout.num_gpus} spawned CPU workers"
    if not args.json:
        return _report(args, job, payload, hf, per_rank, launcher, tok)
    with contextlib.redirect_stdout(io.StringIO()) as text:  # the report's last line is the JSON object
        code = _report(args, job, payload, hf, per_rank, launcher, tok)
    print(text.getvalue().strip().splitlines()[-1])
    return code


def _failed(error, prog: str = "helix run") -> int:
    """A failed run: one line on stderr (every traceback first with HELIX_TRACEBACK=1); exit code 3."""
    if os.environ.get("HELIX_TRACEBACK"):
        for rank, (_, _, _, tb) in sorted(error.failures.items()):
            print(f"--- rank {rank}\n{tb}", file=sys.stderr)
    print(f"{prog}: error: {error.summary()}", file=sys.stderr)
    return 3


def _prompt(args):
    """(prompt ids [B, T], the checkpoint's tokenizer or None): --prompt's text, else random ids."""
    import torch

    from helix.runtime import checkpoint
    from helix.runtime.registry import get_model

    get_model(args.model)  # unknown model: a clear error before anything is built
    vocab = checkpoint.check(args.checkpoint)[1].get("vocab_size", 100) if args.checkpoint else 100
    if args.prompt is not None:
        tok = checkpoint.tokenizer(args.model)
        ids = checkpoint.encode(tok, args.prompt, args.batch, vocab)
        args.prompt_len = ids.shape[1]
        return ids, tok
    g = torch.Generator().manual_seed(args.seed)
    return torch.randint(0, min(100, vocab), (args.batch, args.prompt_len), generator=g), None  # ids < V


def _report(args, job, payload, hf, per_rank, launcher: str, tok=None) -> int:
    """Print the report from ``per_rank[rank][run]`` (every rank when spawned, rank 0 under torchrun)."""
    import torch

    from helix.cost.messages import step_messages
    from helix.runtime.registry import family
    from helix.specs.precision import PrecisionSpec

    layout, results = job.layout, per_rank[0]
    base = results[0]
    with torch.no_grad():
        reference = hf.generate(job.prompt_ids, max_new_tokens=args.new_tokens, do_sample=False,
                                min_new_tokens=args.new_tokens)[:, job.prompt_ids.shape[1]:]
    match = all(torch.equal(r.tokens, reference) for r in results)
    name = os.path.basename(args.model) if args.checkpoint else args.model
    print(f"helix run: {name}, {layout.describe()}, {launcher}, batch {args.batch}, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, KV {args.ownership} (block {args.block_tokens})")
    step_ms = [1e3 * s for s in base.step_s]
    print(f"prefill ms: {1e3 * base.prefill_s:.1f}")
    print("decode step ms (rank 0): " + " ".join(f"{t:.1f}" for t in step_ms))
    mean_ms = statistics.mean(step_ms) if step_ms else float("nan")
    print(f"  mean {mean_ms:.2f}  median {statistics.median(step_ms) if step_ms else float('nan'):.2f}")
    print("KV tokens per rank (S_loc): " + " ".join(f"r{r}={n}" for r, n in enumerate(base.kv_tokens)))
    fam = family(payload.family)
    spec = fam.model_spec(payload.arch, args.model)
    extra = getattr(fam, "extra_step_messages", lambda *_: [])(payload.arch, layout, args.batch)  # DSA's top-k
    rows, exact = _traffic_table(spec, layout, args.batch, [ranks[0] for ranks in per_rank],
                                 PrecisionSpec.uniform("fp32"), step_messages, extra,
                                 getattr(fam, "DATA_DEPENDENT_PHASES", ()))
    summary = {"model": name, "strategy": layout.strategy, "kvp": layout.kvp, "tpa": layout.tpa,
               "dp": layout.dp, "tpf": layout.tpf, "ep": layout.ep, "batch": args.batch,
               "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "step_ms_mean": round(mean_ms, 3),
               "kv_tokens_per_rank": base.kv_tokens, "collectives": rows, "traffic_matches_simulator": exact,
               "tokens_match_hf": match}
    loads = base.extras.get("expert_loads")
    if loads:
        from helix.runtime.moe import expert_load_lines

        for line in expert_load_lines(loads, spec.num_dense_layers):
            print(line)
        decode = [load for step, load in loads.items() if step.startswith("decode")]
        if decode:
            total = torch.stack(decode).sum(dim=0)  # [MoE layers, E]
            summary["expert_load_decode"] = total.tolist()
            summary["expert_load_hottest_to_mean"] = [round(float(r.max() / r.float().mean()), 3) for r in total]
    if args.hopb:
        hopb_ms = statistics.mean(1e3 * s for s in results[1].step_s) if results[1].step_s else float("nan")
        same = torch.equal(results[1].tokens, base.tokens)
        print(f"HOP-B: decode step mean {mean_ms:.2f} ms without, {hopb_ms:.2f} ms with "
              f"({args.hopb_chunks or args.batch} chunks); same tokens: {'yes' if same else 'NO'}")
        summary.update(step_ms_mean_hopb=round(hopb_ms, 3), hopb_same_tokens=same)
    if job.runs[0].reshard is not None:
        from helix.runtime import reshard

        lines, moved_ok, fields = reshard.report(args, job, payload.arch, per_rank)
        print("\n".join(lines))
        summary.update(fields)
        exact = exact and moved_ok
    print(f"tokens match Hugging Face generate (single device): {'yes' if match else 'NO'}")
    if args.checkpoint:
        summary["checkpoint"] = args.model
    if tok is not None:
        summary.update(prompt=args.prompt, text=tok.decode(base.tokens[0].tolist(), skip_special_tokens=True))
        print(f"prompt: {args.prompt!r}\ngenerated: {summary['text']!r}")
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if match and exact else 1


def _traffic_table(spec, layout, batch: int, ranks: list, precision, step_messages, extra=(),
                   data_dependent=()) -> tuple[list[dict], bool]:
    """Print decode step 0's collectives beside the simulator's; ``ranks``: one RunResult per known rank.

    ``extra``: the family's collectives beyond ``step_messages`` (DSA's top-k exchange);
    ``data_dependent``: phases that run only for some inputs (DSA's tie gather), shown, not compared."""
    expected = {m.phase: m for m in step_messages(spec, precision, layout.strategy, layout.tpa, layout.kvp,
                                                  layout.dp, layout.tpf, layout.ep, 1, batch)}
    expected.update({m.phase: m for m in extra})
    traffic = [_per_phase(r, "decode0") for r in ranks]
    every_rank = len(ranks) == layout.num_gpus
    print(f"{'collective (decode step 0)':28} {'kind':11} {'group':>5} {'calls':>5} {'bytes/step':>11} "
          f"{'simulator':>11}  match")
    rows, exact = [], True
    for phase, m in expected.items():
        calls, group = int(m.calls_per_step), int(m.group_size)
        want = int(m.n_bytes * calls) if group > 1 and calls > 0 else 0
        got = [t.get(phase, (0, 0)) for t in traffic]
        if phase in ROUTING_DEPENDENT and want:
            n_calls, n_bytes = got[0][0], sum(n for _, n in got) / len(got)
            if every_rank:
                ok = {c for c, _ in got} == {calls} and n_bytes == want
                verdict, note = ("yes" if ok else "NO"), f" (mean over {len(got)} ranks: routing-dependent)"
            else:  # under torchrun rank 0 sees only its own share
                ok, verdict, note = True, "n/a", " (rank 0 only: routing-dependent, not compared)"
        else:
            ok = all(g == ((calls if want else 0), want) for g in got)
            (n_calls, n_bytes), verdict, note = got[0], ("yes" if ok else "NO"), ""
        exact &= ok
        if want or any(c for c, _ in got):
            n_bytes = int(n_bytes) if float(n_bytes).is_integer() else round(n_bytes, 1)
            print(f"{phase:28} {m.kind:11} {group:5d} {n_calls:5d} {n_bytes:11} {want:11d}  {verdict}{note}")
            rows.append({"phase": phase, "kind": m.kind, "group": group, "calls": n_calls, "bytes": n_bytes,
                         "simulator_bytes": want, "match": verdict})
    unknown = set().union(*traffic) - set(expected)
    for phase in sorted(unknown & set(data_dependent)):
        calls, n_bytes = traffic[0].get(phase, (0, 0))
        print(f"{phase:28} {'all_gather':11} {'':5} {calls:5d} {n_bytes:11} {'':11}  n/a (data-dependent)")
    for phase in sorted(unknown - set(data_dependent)):
        print(f"{phase:28} not in the simulator's step  NO")
    return rows, exact and not unknown - set(data_dependent)


def _per_phase(result, step: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in result.traffic:
        if r.step == step:
            calls, n = out.get(r.phase, (0, 0))
            out[r.phase] = (calls + 1, n + r.n_bytes)
    return out
