"""``helix simulate``, ``helix models``, ``helix hardware``: one decode step, term by term."""

from __future__ import annotations

import argparse
import json
import math
import sys

from helix.commands.domain_args import (
    add_rank_order_args,
    add_scale_out_arg,
    hardware_with_scale_out,
    layout_with_rank_order,
)
from helix.commands.layout_args import (
    add_hardware_engine_arg,
    add_layout_args,
    add_option_args,
    check_routing_for_model,
    hardware_from_args,
    layout_from_args,
    options_from_args,
)
from helix.commands.model_arg import load_model_arg
from helix.errors import HelixInputError
from helix.flags import integer
from helix.specs import load_hardware, load_model, parse_tokens
from helix.specs import model_loader as model_specs
from helix.specs.hardware import preset_names as hardware_presets
from helix.specs.precision import BYTES_PER_ELEMENT, TENSOR_CLASS_HELP, TENSOR_CLASSES, PrecisionSpec
from helix.specs.precision import resolve as resolve_precision
from helix.step import simulate


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """--model, --hardware, --context and precision flags, shared by simulate/sweep/best."""
    p.add_argument("--model", default="deepseek-r1",
                   help="preset (see `helix models`) or path to a Hugging Face config.json / YAML spec "
                        "(default: %(default)s)")
    p.add_argument("--hardware", default="gb200-nvl72",
                   help="preset (see `helix hardware`) or path to a YAML profile (default: %(default)s)")
    add_hardware_engine_arg(p)
    add_scale_out_arg(p)
    p.add_argument("--context", default="1M", help="KV length per request: 1M = 10^6, 128K = 128,000 "
                   "(decimal; 1Mi = 2^20) (default: %(default)s)")
    p.add_argument("--precision", default=None,
                   help=f"format for every tensor class: {', '.join(BYTES_PER_ELEMENT)} (default: fp4; fp8 on "
                        "hardware without FP4 units (h100, h200, h800); a config.json's quantization_config "
                        "sets the weights')")
    for tc in TENSOR_CLASSES:
        p.add_argument(f"--{tc.replace('_', '-')}-precision", dest=f"precision_{tc}", default=None,
                       help=f"format of {TENSOR_CLASS_HELP[tc]} (default: --precision)")


def warn_context(model, context: int) -> None:
    """One line on stderr (after every input is checked) when the context is beyond the config's
    max_position_embeddings: the model was not trained that long, the cost model runs anyway."""
    if model.max_context and context > model.max_context:
        print(f"helix: warning: --context {context:,} exceeds {model.name}'s max_position_embeddings "
              f"({model.max_context:,})", file=sys.stderr)


def precision_from_args(args, model, hw) -> PrecisionSpec:
    """The flags over the hardware's and the checkpoint's defaults (helix.specs.precision.resolve)."""
    overrides = {tc: getattr(args, f"precision_{tc}") for tc in TENSOR_CLASSES if getattr(args, f"precision_{tc}")}
    return resolve_precision(args.precision, overrides, model.checkpoint_weight_formats, hw)


def _ms(s: float) -> str:
    return f"{s * 1e3:10.4f}"


def format_result(result, model, hw, layout, batch, context, overlap_label: str) -> str:
    d = result.to_dict()
    lines = [
        f"{model.name} on {d['num_gpus']} x {hw.name}, {layout.describe()}, batch {batch}, context {context:,} tokens, "
        f"{overlap_label}",
        "",
        f"{'term':<40}{'ms/step':>10}{'share':>9}",
    ]
    ttl = d["ttl_s"]
    comm = d["communication"]
    for term, sec in d["breakdown"].items():
        if sec == 0 and term not in ("attention",):
            continue
        tag = " (exposed comm)" if term in comm else ""
        lines.append(f"{term + tag:<40}{_ms(sec)}{sec / ttl:9.1%}")
    lines.append(f"{'TTL':<40}{_ms(ttl)}")
    lines += ["", f"{'collective':<28}{'total ms':>10}{'exposed':>10}{'hidden':>10}"]
    for name, c in comm.items():
        if c["total_s"] == 0:
            continue
        hidden = max(c["total_s"] - c["exposed_s"], 0.0)
        lines.append(f"{name:<28}{_ms(c['total_s'])}{_ms(c['exposed_s'])}{_ms(hidden)}")
    gb = 1e9
    lines += [
        "",
        f"tokens/s/user {d['tokens_per_s_per_user']:.2f}   tokens/s/GPU {d['tokens_per_s_per_gpu']:.3f}",
        f"memory/GPU {d['memory_per_gpu_bytes'] / gb:.2f} GB (weights {d['weight_bytes_per_gpu'] / gb:.2f} GB, "
        f"KV {d['kv_bytes_per_gpu'] / gb:.2f} GB) of {hw.usable_hbm_bytes / gb:.1f} GB usable",
        "feasible" if d["feasible"] else f"INFEASIBLE: {d['infeasible_reason']}",
    ]
    return "\n".join(lines)


def run_simulate(args) -> int:
    if args.batch < 1:
        raise HelixInputError("--batch", f"must be >= 1, got {args.batch}")
    model = load_model_arg(args.model)
    hw = hardware_with_scale_out(hardware_from_args(args), args)
    context = parse_tokens(args.context)
    precision = precision_from_args(args, model, hw)
    layout = layout_with_rank_order(layout_from_args(args), args)
    options = options_from_args(args)
    if args.tbo and layout.strategy != "dp_ep":
        raise HelixInputError("--tbo", f"two-batch overlap runs DP attention + EP; it conflicts with --strategy "
                              f"{layout.strategy} (use --strategy dp_ep)")
    if args.no_hopb and layout.strategy != "helix":
        raise HelixInputError("--no-hopb", f"HOP-B is Helix's overlap; it conflicts with --strategy {layout.strategy}")
    overlap = "serial" if args.no_hopb else "auto"
    if not 1 <= args.expert_imbalance < math.inf:  # also NaN
        raise HelixInputError("--expert-imbalance", f"must be a finite number >= 1, got {args.expert_imbalance}")
    check_routing_for_model(args, model)
    if args.expert_imbalance != 1 and not model.is_moe:
        raise HelixInputError("--expert-imbalance", f"routes tokens to experts; {model.name!r} is dense (no experts)")
    warn_context(model, context)
    result = simulate(model, hw, layout, args.batch, context, precision, overlap=overlap,
                      expert_imbalance=args.expert_imbalance, **options)
    if args.json:
        fields = {k: getattr(layout, k) for k in ("strategy", "tpa", "kvp", "dp", "tpf", "ep", "pp")}
        out = {"model": model.name, "hardware": hw.name, "engine": hw.engine or "none", "layout": layout.describe(),
               "layout_fields": fields, "batch_size": args.batch, "context_tokens": context, "overlap": overlap,
               "options": options, **result.to_dict()}
        print(json.dumps(out, indent=2))
    else:
        if args.tbo:
            label = "two-batch overlap"
        elif layout.strategy == "helix":
            label = "HOP-B off" if overlap == "serial" else "HOP-B on"
        else:
            label = "default overlap"
        print(format_result(result, model, hw, layout, args.batch, context, label))
    return 0


def run_models(args) -> int:
    rows = []
    for name in model_specs.preset_names():
        m = load_model(name)
        rows.append({"name": name, "attention": m.attention, "layers": m.num_layers, "hidden_dim": m.hidden_dim,
                     "query_heads": m.num_query_heads, "kv_heads": m.cache_heads, "ffn_dim": m.ffn_dim,
                     "experts": m.num_experts if m.is_moe else 0, "experts_per_token": m.experts_per_token if m.is_moe
                     else 0, "params": int(m.total_params), "kv_bytes_per_token_fp4": m.kv_cache_bytes_per_token(0.5)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<18}{'attention':>10}{'layers':>8}{'H':>8}{'Q':>5}{'K':>5}{'F':>8}{'experts':>12}"
          f"{'params (B)':>12}{'KV B/token':>12}")
    for r in rows:
        experts = f"{r['experts']}/{r['experts_per_token']}" if r["experts"] else "-"
        print(f"{r['name']:<18}{r['attention']:>10}{r['layers']:>8}{r['hidden_dim']:>8}{r['query_heads']:>5}"
              f"{r['kv_heads']:>5}{r['ffn_dim']:>8}{experts:>12}{r['params'] / 1e9:>12.1f}"
              f"{r['kv_bytes_per_token_fp4']:>12,.0f}")
    print("\nKV bytes/token over all layers at FP4 (0.5 B/element). Any HF config.json also works: --model PATH")
    return 0


def run_hardware(args) -> int:
    rows = []
    for name in hardware_presets():
        h = load_hardware(name)
        rows.append({"name": name, "peak_flops_per_s_fp4": h.peak_flops_per_s_fp4, "peak_flops_per_s_fp8":
                     h.peak_flops_per_s_fp8, "hbm_capacity_bytes": h.hbm_capacity_bytes, "hbm_bytes_per_s":
                     h.hbm_bytes_per_s, "scale_up_domain_gpus": h.scale_up_domain_gpus,
                     "scale_out_network": h.scale_out_network,
                     "scale_out_bytes_per_s_per_direction": h.scale_out_bytes_per_s_per_direction,
                     "link_bytes_per_s_per_direction": h.link_bytes_per_s_per_direction,
                     "kernel_launch_s": h.kernel_launch_s, "engines": sorted(h.op_models),
                     "description": h.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<14}{'FP4 PF/s':>9}{'FP8 PF/s':>9}{'HBM GB':>8}{'HBM TB/s':>9}{'domain':>7}{'link GB/s':>10}"
          f"{'scale-out GB/s':>19}{'launch us':>10}  {'engines':<15}description")
    for r in rows:
        net = f"{r['scale_out_network']} {r['scale_out_bytes_per_s_per_direction'] / 1e9:.0f}"
        print(f"{r['name']:<14}{r['peak_flops_per_s_fp4'] / 1e15:>9.2f}{r['peak_flops_per_s_fp8'] / 1e15:>9.2f}"
              f"{r['hbm_capacity_bytes'] / 1e9:>8.0f}{r['hbm_bytes_per_s'] / 1e12:>9.2f}{r['scale_up_domain_gpus']:>7}"
              f"{r['link_bytes_per_s_per_direction'] / 1e9:>10.0f}"
              f"{net:>19}"
              f"{r['kernel_launch_s'] * 1e6:>10.1f}  "
              f"{','.join(r['engines']) or '-':<15}{r['description']}")
    print("\nLink and scale-out bandwidths are per GPU per direction (scale-out: the network between domains, "
          "--scale-out swaps it). engines: the measured op models --engine picks from (trtllm is the "
          "default); '-' = the plain roofline, where 'launch us' is the fixed cost per op (as with --engine none). "
          "Sources of every number: src/helix/specs/presets/hardware/*.yaml and op_models/*.json")
    return 0


def register(sub) -> None:
    p = sub.add_parser("simulate", help="one decode step: TTL, tokens/s, memory and a term-by-term breakdown",
                       description="Simulate one decode step of MODEL on HARDWARE with a given layout and batch.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  helix simulate --model deepseek-r1 --context 1M --batch 16 --strategy helix --kvp 64 "
                              "--tpa 1 --tpf 8 --ep 8\n"
                              "  # TensorRT-LLM / SGLang 'TP8 EP8' (attention TP 8, MoE EP 8):\n"
                              "  helix simulate --hardware h200 --strategy tp --gpus 8 --ep 8 --context 2K --batch 64\n"
                              "  # DeepSeek's decode deployment (DP attention + EP144, 32 redundant experts, TBO):\n"
                              "  helix simulate --hardware h800 --engine sglang --strategy dp_ep --gpus 144 "
                              "--redundant-experts 32 --tbo --precision fp8 --kv-cache-precision bf16 "
                              "--attention-compute-precision bf16 --moe-combine-precision bf16 --context 4989 "
                              "--batch 9360")
    add_spec_args(p)
    p.add_argument("--batch", type=integer, default=16, help="concurrent requests B (default: %(default)s)")
    add_layout_args(p)
    add_rank_order_args(p)
    add_option_args(p, tbo_help="DP+EP two-batch overlap: two micro-batches, one's dispatch/combine hidden behind "
                                "the other's compute (--strategy dp_ep)")
    p.add_argument("--no-hopb", action="store_true", help="Helix without HOP-B (all-to-all exposed)")
    p.add_argument("--expert-imbalance", type=float, default=1.0,
                   help="hottest expert rank's load / mean load, on top of the routing the kernel tables "
                        "are read at (--expert-routing) (empirical factor, default: 1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run_simulate)

    for name, what, func in (("models", "model", run_models), ("hardware", "hardware", run_hardware)):
        p = sub.add_parser(name, help=f"list the {what} presets and their key numbers")
        p.add_argument("--json", action="store_true", help="print one JSON list of the presets instead of the table")
        p.set_defaults(func=func)
