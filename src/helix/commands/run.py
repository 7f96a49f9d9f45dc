"""``helix run``: greedy Helix decoding of a registry model (or a local HF checkpoint, ``--checkpoint DIR``
with ``--prompt TEXT``) on torch.distributed, checked against HF.

Run plainly, it validates its arguments, builds the model once and spawns one CPU worker (gloo) per
rank of the layout. Under ``torchrun`` (RANK / WORLD_SIZE set) every rank builds the same seeded
model and rank 0 prints. The report (helix.commands.run_report): per-step decode latency, the KV tokens
each rank holds, the bytes of every collective per decode step beside the simulator's formula
(helix.validation.traffic), the expert load of MoE models, and whether the tokens equal Hugging Face
``generate`` on one device.
With ``--hopb`` the run is made without and with HOP-B and both step times are shown. The last line
is compact JSON (``--json``: that line only).

Layouts (the flags and parser of ``helix simulate``, helix.commands.layout_args, at KVP 2 / N 2 when no
width is given): ``--strategy helix`` (default) is KVP x TPA attention with the FFN as TPF x EP on the
same N = KVP x TPA ranks (``--tpf``/``--ep``, TPF x EP = N); ``--strategy dp_ep`` is the DP+EP baseline
on ``--gpus`` N ranks (DP = EP = N, whole experts; MoE models only).

Limits: ``--timeout-s`` (default 60 s, 1 s to 1 day) bounds process-group setup and each collective,
which is how a dead or stopped peer is found: a failed rank ends the job within about --timeout-s
+ 10 s, and no worker process is left behind. ``--job-timeout-s`` bounds the whole job (default: no
limit; a healthy run is never cut short). Exit codes: 0 the tokens and traffic match, 1 they do not,
2 bad input (one line, nothing spawned), 3 the run failed (one line: the rank, its phase, the
remedy; ``HELIX_TRACEBACK=1`` adds every rank's traceback), 130 interrupted.

This module is imported when the ``helix`` command starts: torch is imported inside the handler only,
so ``helix simulate`` does not pay for it. Where torch is not installed at all (``pip install -e .``
without the ``runtime`` extra), helix.cli leaves ``run`` out of the commands (``NEEDS_TORCH``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

from helix.commands.layout_args import add_layout_args, layout_from_args
from helix.commands.run_args import check_combinations, check_runnable, positive, reshard_from_args, resolve_source
from helix.errors import HelixInputError
from helix.flags import integer
from helix.flags import seed as seed_flag

NEEDS_TORCH = True  # helix.cli leaves this command out without torch


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run Helix decoding on torch.distributed and check it against HF",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="runtime model preset (default tiny-llama; "
                   "tiny-deepseek: MLA + MoE; tiny-deepseek-v32: with DSA sparse attention)")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="a local Hugging Face checkpoint instead "
                   "(config.json, *.safetensors, tokenizer; model_type llama, deepseek_v3 or deepseek_v32)")
    p.add_argument("--prompt", default=None, help="prompt text, tokenized by the checkpoint's tokenizer "
                   "(--checkpoint; repeated --batch times, default batch 1); the output is decoded to text")
    add_layout_args(p, strategies=("helix", "dp_ep"), default_width=2, data_and_pipeline=False)
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
    from helix.commands.run_report import report
    from helix.runtime.launch import Job, WorkerError, prepare, run_job, run_spawned  # torch: imported here
    from helix.runtime.limits import check_prompt

    job_timeout = _check_flags(args)
    layout = layout_from_args(args)
    check_runnable(args, layout)
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    check_combinations(args, layout, under_torchrun)
    runs = _runs(args, layout)
    if args.prompt is None:
        check_prompt(args.batch, args.prompt_len)
    prompt, tok = _prompt(args)
    job = Job(args.model, layout, prompt, runs, timeout_s=args.timeout_s)
    if under_torchrun:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        payload, hf = prepare(job)
        try:
            per_rank = [run_job(rank, world, "env://", payload)]  # this rank's only
        except HelixInputError:
            raise
        except Exception as exc:  # this rank's failure, one line (torchrun reports the others)
            return _failed(_rank_error(exc, rank, args.timeout_s), f"helix run (rank {rank})")
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
        return report(args, job, payload, hf, per_rank, launcher, tok)
    with contextlib.redirect_stdout(io.StringIO()) as text:  # the report's last line is the JSON object
        code = report(args, job, payload, hf, per_rank, launcher, tok)
    print(text.getvalue().strip().splitlines()[-1])
    return code


def _check_flags(args):
    """Every flag checked on its own (before the layout); returns the whole job's deadline or None."""
    from helix.runtime.kv_cache import OWNERSHIP_RULES
    from helix.runtime.limits import check_job_timeout, check_timeout

    resolve_source(args)
    check_timeout("--timeout-s", args.timeout_s)
    job_timeout = check_job_timeout("--job-timeout-s", args.job_timeout_s)
    for name in ("batch", "prompt_len", "new_tokens", "block_tokens"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
    if args.new_tokens < 2:
        raise HelixInputError("--new-tokens", f"must be >= 2 (prefill, then decode steps), got {args.new_tokens}")
    if args.ownership not in OWNERSHIP_RULES:
        raise HelixInputError("--ownership", f"unknown rule {args.ownership!r}; allowed: {', '.join(OWNERSHIP_RULES)}")
    return job_timeout


def _runs(args, layout) -> tuple:
    """The job's RunSpecs: the plain run (with its re-shard, if any), then with --hopb the HOP-B run."""
    from helix.runtime.decoder import DecodeOptions
    from helix.runtime.launch import RunSpec

    base = DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership)
    runs = [RunSpec(args.new_tokens, base, reshard_from_args(args, layout))]
    if args.hopb:
        runs.append(RunSpec(args.new_tokens, DecodeOptions(block_tokens=args.block_tokens, ownership=args.ownership,
                                                           hopb_chunks=args.hopb_chunks or args.batch)))
    return tuple(runs)


def _rank_error(exc: Exception, rank: int, timeout_s: float):
    """Under torchrun, this rank's exception as a one-rank WorkerError (its phase, its traceback)."""
    import traceback

    from helix.runtime import failures
    from helix.runtime.launch import WorkerError

    return WorkerError({rank: (type(exc).__name__, "", str(exc), traceback.format_exc())},
                       {rank: failures.PROGRESS.phase()}, timeout_s)


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
