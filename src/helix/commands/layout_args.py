"""Layout flags of ``simulate`` and ``run`` (one parser, ``layout_from_args``) and the production-option flags
of ``simulate``, ``sweep`` and ``best``, checked before any work.

Engine names map to the flags below (docs/architecture.md, "Layouts"): TensorRT-LLM ``tp_size`` /
``moe_tp_size`` / ``moe_ep_size`` / ``enable_attention_dp``, SGLang ``--tp`` / ``--ep`` /
``--enable-dp-attention``, vLLM ``--tensor-parallel-size`` / ``--enable-expert-parallel``. A flag that the
strategy fixes, or two flags that disagree, is an error naming both: never silently resolved.
"""

from __future__ import annotations

import argparse
import math

from helix.cost.terms import EXPERT_ROUTINGS
from helix.errors import HelixInputError
from helix.flags import integer
from helix.layout import STRATEGIES, Layout
from helix.specs import load_hardware

ENGINE_CHOICES = ("trtllm", "sglang", "none")


def add_hardware_engine_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default=None,
                   help="whose measured kernel tables time the ops: trtllm (TensorRT-LLM, default) or sglang; "
                        "none = the uncalibrated roofline with the preset's two fixed costs")


def hardware_from_args(args):
    engine = args.engine
    if engine is not None and engine not in ENGINE_CHOICES:
        raise HelixInputError("--engine", f"unknown engine {engine!r}; allowed: {', '.join(ENGINE_CHOICES)}")
    return load_hardware(args.hardware, engine=engine)


def add_layout_args(p: argparse.ArgumentParser, strategies: tuple[str, ...] = STRATEGIES, default_width: int = 1,
                    data_and_pipeline: bool = True) -> None:
    """The layout flags. ``default_width``: the attention's parallel width when no flag gives it (KVP of
    helix and medha, DP of dp_ep, TPA of tp); ``data_and_pipeline=False`` (``helix run``: Helix with DP = 1,
    PP = 1) leaves out --dp and --pp, read as 1."""
    p.add_argument("--strategy", choices=strategies, default="helix",
                   help=f"sharding strategy: {', '.join(strategies)} (default: helix)")
    p.add_argument("--gpus", type=integer, default=None,
                   help="N per pipeline stage: attention TP of tp / tp_pp, attention DP of dp_ep (default: "
                        "--ep x --tpf), KVP x TPA x DP of helix and medha")
    axes = [("tpa", "attention TP width (helix, medha; tp: same as --gpus)"),
            ("kvp", f"KV-parallel width (helix, medha; default: --gpus / TPA, else {default_width})"),
            ("dp", "attention DP width (helix; dp_ep: same as --gpus)"),
            ("tpf", "MoE / FFN TP width: TPF x EP = N (default: N / EP; dp_ep: 1)"),
            ("ep", "expert-parallel width: TPF x EP = N (default: 1; dp_ep: N / TPF)")]
    for axis, what in axes if data_and_pipeline else [a for a in axes if a[0] != "dp"]:
        p.add_argument(f"--{axis}", type=integer, default=None, help=what)
    if data_and_pipeline:
        p.add_argument("--pp", type=integer, default=1, help="pipeline stages (default: 1)")
    else:
        p.set_defaults(dp=None, pp=1)
    p.set_defaults(default_width=default_width)


def add_option_args(p: argparse.ArgumentParser, *, tbo_help: str) -> None:
    p.add_argument("--redundant-experts", type=integer, default=0,
                   help="R extra expert slots (EPLB replicas of hot experts): the MoE kernels are timed at balanced "
                        "routing instead of skewed; EP must divide E + R (default: 0)")
    p.add_argument("--expert-routing", default="auto", metavar="{auto,power_law,balanced}",
                   help="the routing the MoE kernels are timed at: power_law (live traffic, aiconfigurator's DeepSeek "
                        "default), balanced (EPLB, or a benchmark's synthetic routing); auto = balanced with "
                        "--redundant-experts, power_law without (default: auto)")
    p.add_argument("--allow-uneven", action="store_true",
                   help="keep layouts whose widths do not divide the model (fractional shards, exploration only)")
    p.add_argument("--tbo", action="store_true", help=tbo_help)
    p.add_argument("--mtp-tokens", type=integer, default=0,
                   help="MTP speculative decoding: K draft tokens verified per step (default: 0 = off)")
    p.add_argument("--mtp-acceptance", type=float, default=None,
                   help="tokens accepted per step on average, in [1, K + 1] (needs --mtp-tokens)")


def options_from_args(args) -> dict:
    """simulate/evaluate keyword options, every value checked with its flag's name."""
    r = args.redundant_experts
    if r < 0:
        raise HelixInputError("--redundant-experts", f"must be an integer >= 0, got {r}")
    k, a = args.mtp_tokens, args.mtp_acceptance
    if k < 0:
        raise HelixInputError("--mtp-tokens", f"must be an integer >= 0, got {k}")
    if a is not None and k == 0:
        raise HelixInputError("--mtp-acceptance", "needs --mtp-tokens K >= 1 (MTP off accepts 1 token per step)")
    if a is not None and not (math.isfinite(a) and 1.0 <= a <= k + 1):
        raise HelixInputError("--mtp-acceptance", f"must be in [1, --mtp-tokens + 1 = {k + 1}], got {a:g}")
    if args.expert_routing not in EXPERT_ROUTINGS:
        raise HelixInputError("--expert-routing", f"unknown {args.expert_routing!r}; allowed: "
                                                  f"{', '.join(EXPERT_ROUTINGS)}")
    options = {"redundant_experts": r, "expert_routing": args.expert_routing, "allow_uneven": bool(args.allow_uneven),
               "tbo": bool(args.tbo), "mtp_tokens": k}
    if k:
        options["mtp_acceptance"] = a if a is not None else float(k + 1)
    return options


def check_routing_for_model(args, model) -> None:
    """--expert-routing picks the MoE kernels' routing; a dense model has none to pick."""
    if args.expert_routing != "auto" and not model.is_moe:
        raise HelixInputError("--expert-routing", f"routes tokens to experts; {model.name!r} is dense (no experts)")


def _positive(args) -> None:
    for flag in ("gpus", "tpa", "kvp", "dp", "tpf", "ep", "pp"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise HelixInputError(f"--{flag}", f"must be >= 1, got {value}")


def _forbid(args, strategy: str, flags: tuple[str, ...], why: str) -> None:
    for flag in flags:
        if getattr(args, flag) is not None:
            raise HelixInputError(f"--{flag}", f"--strategy {strategy} {why}; drop --{flag}")


def _width(args, a: str, b: str, strategy: str, default: int) -> int:
    """The one width two flags both name (--gpus and --tpa for tp): equal, only one of them given, or
    neither (``default``)."""
    va, vb = getattr(args, a), getattr(args, b)
    if va is not None and vb is not None and va != vb:
        raise HelixInputError(f"--{a}", f"conflicts with --{b} {vb}: --strategy {strategy} sets both from one width "
                              f"(got --{a} {va}); give one of them")
    return va or vb or default


def _ffn_split(args, n: int, default_ep: int) -> tuple[int, int]:
    """(TPF, EP) with TPF x EP = N from --tpf / --ep (either, both, or neither: the strategy's default)."""
    tpf, ep = args.tpf, args.ep
    if tpf is not None and ep is not None:
        if tpf * ep != n:
            raise HelixInputError("--tpf", f"--tpf {tpf} x --ep {ep} = {tpf * ep} conflicts with N = {n}: "
                                  "TPF x EP must equal the GPUs per stage")
        return tpf, ep
    if ep is not None or tpf is not None:
        flag, value = ("--ep", ep) if ep is not None else ("--tpf", tpf)
        if n % value:
            raise HelixInputError(flag, f"must divide N = {n} (TPF x EP = N), got {value}")
        return (n // ep, ep) if ep is not None else (tpf, n // tpf)
    return n // default_ep, default_ep


def layout_from_args(args) -> Layout:
    """The layout the flags describe (see the module docstring for the rules), one parser for every command
    that takes a layout (``simulate``, ``run``); each command's default width comes from ``add_layout_args``."""
    _positive(args)
    s, n, default = args.strategy, args.gpus, args.default_width
    if s in ("tp", "tp_pp"):
        _forbid(args, s, ("kvp", "dp"), "has no KV or data parallelism in attention (kvp = dp = 1)")
        if s == "tp" and args.pp != 1:
            raise HelixInputError("--pp", "--strategy tp has one stage; use --strategy tp_pp for pipeline stages")
        if s == "tp_pp" and args.pp < 2:
            raise HelixInputError("--pp", "--strategy tp_pp needs --pp >= 2 (one stage is --strategy tp)")
        width = _width(args, "gpus", "tpa", s, default)
        tpf, ep = _ffn_split(args, width, 1)
        return Layout(tpa=width, tpf=tpf, ep=ep, pp=args.pp, strategy=s)
    if s == "dp_ep":
        _forbid(args, s, ("tpa", "kvp"), "runs attention data-parallel only (tpa = kvp = 1)")
        # DP = EP = N in production: --ep (x --tpf) alone names the width too
        ffn = args.ep * (args.tpf or 1) if args.ep is not None else default
        width = _width(args, "gpus", "dp", s, ffn)
        tpf, ep = _ffn_split(args, width, width)
        return Layout(dp=width, tpf=tpf, ep=ep, pp=args.pp, strategy=s)
    tpa, dp = args.tpa or 1, args.dp or 1
    if s == "medha":
        _forbid(args, s, ("tpf", "ep", "dp"), "ties the FFN to attention TP (tpf = tpa, ep = dp = 1)")
    if args.kvp is None:
        if n is not None and n % (tpa * dp):
            raise HelixInputError("--gpus", f"must be a multiple of --tpa x --dp = {tpa * dp}, got {n}")
        kvp = n // (tpa * dp) if n else default
    else:
        kvp = args.kvp
        if n is not None and kvp * tpa * dp != n:
            with_dp = f" x --dp {dp}" if dp != 1 else ""
            raise HelixInputError("--gpus", f"conflicts with --kvp {kvp} x --tpa {tpa}{with_dp} = {kvp * tpa * dp}; "
                                  "give --gpus or the widths, or make them agree")
    if s == "medha":
        return Layout.medha(kvp, tpa, pp=args.pp)
    tpf, ep = _ffn_split(args, kvp * tpa * dp, 1)
    return Layout(tpa=tpa, kvp=kvp, dp=dp, tpf=tpf, ep=ep, pp=args.pp, strategy="helix")
