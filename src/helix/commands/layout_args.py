"""Layout and production-option flags of ``simulate``, ``sweep`` and ``best``, checked before any work.

Engine names map to the flags below (docs/architecture.md, "Layouts"): TensorRT-LLM ``tp_size`` /
``moe_tp_size`` / ``moe_ep_size`` / ``enable_attention_dp``, SGLang ``--tp`` / ``--ep`` /
``--enable-dp-attention``, vLLM ``--tensor-parallel-size`` / ``--enable-expert-parallel``. A flag that the
strategy fixes, or two flags that disagree, is an error naming both: never silently resolved.
"""

from __future__ import annotations

import argparse
import math

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


def add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", choices=STRATEGIES, default="helix", help="sharding strategy (default: helix)")
    p.add_argument("--gpus", type=integer, default=None,
                   help="N per pipeline stage: attention TP of tp / tp_pp, attention DP of dp_ep, KVP x TPA x DP "
                        "of helix and medha")
    for axis, what in (("tpa", "attention TP width (helix, medha; tp: same as --gpus)"),
                       ("kvp", "KV-parallel width (helix, medha)"),
                       ("dp", "attention DP width (helix; dp_ep: same as --gpus)"),
                       ("tpf", "MoE / FFN TP width: TPF x EP = N (default: N / EP; dp_ep: 1)"),
                       ("ep", "expert-parallel width: TPF x EP = N (default: 1; dp_ep: N / TPF)")):
        p.add_argument(f"--{axis}", type=integer, default=None, help=what)
    p.add_argument("--pp", type=integer, default=1, help="pipeline stages (default: 1)")


def add_option_args(p: argparse.ArgumentParser, *, tbo_help: str) -> None:
    p.add_argument("--redundant-experts", type=integer, default=0,
                   help="R extra expert slots (EPLB replicas of hot experts); EP must divide E + R (default: 0)")
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
    options = {"redundant_experts": r, "allow_uneven": bool(args.allow_uneven), "tbo": bool(args.tbo),
               "mtp_tokens": k}
    if k:
        options["mtp_acceptance"] = a if a is not None else float(k + 1)
    return options


def _positive(args) -> None:
    for flag in ("gpus", "tpa", "kvp", "dp", "tpf", "ep", "pp"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise HelixInputError(f"--{flag}", f"must be >= 1, got {value}")


def _forbid(args, strategy: str, flags: tuple[str, ...], why: str) -> None:
    for flag in flags:
        if getattr(args, flag) is not None:
            raise HelixInputError(f"--{flag}", f"--strategy {strategy} {why}; drop --{flag}")


def _width(args, a: str, b: str, strategy: str) -> int:
    """The one width two flags both name (--gpus and --tpa for tp): equal or only one of them given."""
    va, vb = getattr(args, a), getattr(args, b)
    if va is not None and vb is not None and va != vb:
        raise HelixInputError(f"--{a}", f"conflicts with --{b} {vb}: --strategy {strategy} sets both from one width "
                              f"(got --{a} {va}); give one of them")
    return va or vb or 1


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
    """The layout the flags describe (see the module docstring for the rules)."""
    _positive(args)
    s, n = args.strategy, args.gpus
    if s in ("tp", "tp_pp"):
        _forbid(args, s, ("kvp", "dp"), "has no KV or data parallelism in attention (kvp = dp = 1)")
        if s == "tp" and args.pp != 1:
            raise HelixInputError("--pp", "--strategy tp has one stage; use --strategy tp_pp for pipeline stages")
        if s == "tp_pp" and args.pp < 2:
            raise HelixInputError("--pp", "--strategy tp_pp needs --pp >= 2 (one stage is --strategy tp)")
        width = _width(args, "gpus", "tpa", s)
        tpf, ep = _ffn_split(args, width, 1)
        return Layout(tpa=width, tpf=tpf, ep=ep, pp=args.pp, strategy=s)
    if s == "dp_ep":
        _forbid(args, s, ("tpa", "kvp"), "runs attention data-parallel only (tpa = kvp = 1)")
        width = _width(args, "gpus", "dp", s)
        tpf, ep = _ffn_split(args, width, width)
        return Layout(dp=width, tpf=tpf, ep=ep, pp=args.pp, strategy=s)
    tpa, dp = args.tpa or 1, args.dp or 1
    if s == "medha":
        _forbid(args, s, ("tpf", "ep", "dp"), "ties the FFN to attention TP (tpf = tpa, ep = dp = 1)")
    if args.kvp is None:
        if n is not None and n % (tpa * dp):
            raise HelixInputError("--gpus", f"must be a multiple of --tpa x --dp = {tpa * dp}, got {n}")
        kvp = n // (tpa * dp) if n else 1
    else:
        kvp = args.kvp
        if n is not None and kvp * tpa * dp != n:
            raise HelixInputError("--gpus", f"conflicts with --kvp {kvp} x --tpa {tpa} x --dp {dp} = "
                                  f"{kvp * tpa * dp}; give --gpus or the widths, or make them agree")
    if s == "medha":
        return Layout.medha(kvp, tpa, pp=args.pp)
    tpf, ep = _ffn_split(args, kvp * tpa * dp, 1)
    return Layout(tpa=tpa, kvp=kvp, dp=dp, tpf=tpf, ep=ep, pp=args.pp, strategy="helix")
