"""The flags of ``helix run`` that shape the job, checked before torch or any worker: what the runtime's
layouts add to the layout flags (``check_runnable``; the flags themselves are helix.commands.layout_args'),
what it decodes (``resolve_source``) and the flag combinations that would mean nothing (``check_combinations``).

Every flag given must do something: one the chosen layout or launcher would ignore is an error naming
both flags, or is accepted only at its default (``--ownership`` and ``--block-tokens`` with one KVP rank).
"""

from __future__ import annotations

from helix.errors import HelixInputError


def positive(field: str, value: int) -> int:
    if value < 1:
        raise HelixInputError(field, f"must be >= 1, got {value}")
    return value


def check_runnable(args, layout) -> None:
    """What the runtime's layouts add to ``layout_from_args``'s: DP+EP holds whole experts (EP = N, TPF = 1)
    and whole requests (B a multiple of N). Named by the flag, before launch.Job repeats it by field."""
    if layout.strategy != "dp_ep":
        return
    n = layout.dp
    if layout.ep != n:
        flag, value = ("--tpf", args.tpf) if args.tpf is not None else ("--ep", args.ep)
        raise HelixInputError(flag, f"the runtime's dp_ep moves whole experts (EP = N = {n}, TPF = 1), got {value}")
    if args.batch % n:
        raise HelixInputError("--batch", f"must be a multiple of N (={n}) under dp_ep (every rank owns "
                              f"B/N whole requests), got {args.batch}")


def check_combinations(args, layout, under_torchrun: bool) -> None:
    """Every flag given does something: one the layout or the launcher would ignore is an error naming both
    (--ownership and --block-tokens only at their defaults where one KVP rank holds every KV token)."""
    kvp, strategy = layout.kvp, layout.strategy
    if args.hopb_chunks is not None:
        positive("--hopb-chunks", args.hopb_chunks)
    if args.hopb_chunks is not None and not args.hopb:
        raise HelixInputError("--hopb-chunks", "only applies with --hopb (the HOP-B run): add --hopb or drop it")
    if args.hopb and strategy == "dp_ep":
        raise HelixInputError("--hopb", "overlaps Helix's KVP all-to-all, which --strategy dp_ep does not have")
    if args.hopb and strategy == "helix" and kvp == 1:
        raise HelixInputError("--hopb", "overlaps the KVP all-to-all, which --kvp 1 does not have: drop it or "
                                        "use --kvp >= 2")
    if args.hopb_chunks is not None and args.hopb_chunks > args.batch:
        raise HelixInputError("--hopb-chunks", f"must be <= --batch ({args.batch}): a chunk holds at least one "
                                               f"request, got {args.hopb_chunks}")
    where = "--strategy dp_ep" if strategy == "dp_ep" else "--kvp 1"
    for flag, value, default in (("--ownership", args.ownership, "round_robin"),
                                 ("--block-tokens", args.block_tokens, 16)):
        if kvp == 1 and value != default:
            raise HelixInputError(flag, f"decides which KVP rank holds each KV token; with {where} one rank holds "
                                        f"them all: drop it (got {value})")
    if under_torchrun and args.job_timeout_s is not None:
        raise HelixInputError("--job-timeout-s", "applies to spawned workers only; under torchrun use torchrun's "
                                                 "own limits (--max-restarts, its rendezvous timeout)")


def reshard_from_args(args, layout):
    """The helix.runtime.reshard.Reshard that ``--reshard-at``/``--reshard-kvp``/``--reshard-tpa`` ask for
    (None: none); one-line errors for a combination that cannot run."""
    given = [f for f in ("reshard_at", "reshard_kvp", "reshard_tpa") if getattr(args, f, None) is not None]
    if not given:
        return None
    if "reshard_at" not in given or "reshard_kvp" not in given:
        missing = "--reshard-at" if "reshard_at" not in given else "--reshard-kvp"
        raise HelixInputError(missing, "--reshard-at and --reshard-kvp go together (--reshard-tpa: default N/KVP)")
    from helix.runtime.registry import get_model
    from helix.runtime.reshard import Reshard  # torch: only for a run that asks for a re-shard

    if layout.strategy != "helix" or get_model(args.model).family != "llama":
        raise HelixInputError("--reshard-kvp", f"re-sharding runs Helix on the llama family, got {args.model!r} "
                                               f"with --strategy {layout.strategy}")
    n = layout.num_gpus
    new_tpa = args.reshard_tpa if args.reshard_tpa is not None else n // max(args.reshard_kvp, 1)
    out = Reshard(args.reshard_at, args.reshard_kvp, new_tpa)
    if out.at_step > args.new_tokens - 2:
        raise HelixInputError("--reshard-at", f"must be a decode step in 1..{args.new_tokens - 2} (--new-tokens "
                                              f"{args.new_tokens}), got {out.at_step}")
    if args.ownership != "round_robin":
        raise HelixInputError("--reshard-at", f"re-sharding needs --ownership round_robin, got {args.ownership!r}")
    out.layout(layout)  # N must match
    return out


def resolve_source(args) -> None:
    """What ``helix run`` decodes: a preset (``--model``, a random prompt of ``--prompt-len`` ids drawn with
    ``--seed``) or a local checkpoint (``--checkpoint DIR``, optionally ``--prompt TEXT`` through its tokenizer).
    Fills the defaults that depend on which (``--batch`` 1 with ``--prompt``, else 4); torch-free."""
    import os

    from helix.runtime import checkpoint

    if args.checkpoint is not None:
        if args.model is not None:
            raise HelixInputError("--model", "names a preset and --checkpoint a checkpoint directory: give one of them")
        path, _, _ = checkpoint.check(args.checkpoint)
        if args.prompt is not None and not checkpoint.has_tokenizer(path):
            raise HelixInputError("--prompt", f"needs the checkpoint's tokenizer: {args.checkpoint!r} has none of "
                                              f"{', '.join(checkpoint.TOKENIZER_FILES)}")
        args.model = path  # registry.get_model resolves an absolute path as a checkpoint, on every rank
    else:
        if args.prompt is not None:
            raise HelixInputError("--prompt", "needs --checkpoint DIR (a tokenizer); the presets decode a random "
                                              "prompt of --prompt-len ids")
        if args.model is not None and os.path.isabs(args.model):
            raise HelixInputError("--model", f"names a preset, got the path {args.model!r}: a checkpoint directory "
                                             "goes to --checkpoint")
        args.model = "tiny-llama" if args.model is None else args.model
    if args.prompt is not None:
        for flag, value in (("--prompt-len", args.prompt_len), ("--seed", args.seed)):
            if value is not None:
                raise HelixInputError(flag, "shapes the random prompt, which --prompt replaces: drop one of them")
    args.batch = args.batch if args.batch is not None else (1 if args.prompt is not None else 4)
    args.prompt_len = 256 if args.prompt_len is None else args.prompt_len
    args.seed = 0 if args.seed is None else args.seed
