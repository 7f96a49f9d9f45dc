"""``helix sweep`` (every layout x batch, frontiers, counts by reason) and ``helix best`` (planning under a
TTL budget, with the term-by-term breakdown of the chosen configurations)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from helix import outputs, search
from helix.commands.layout_args import add_option_args, hardware_from_args, options_from_args
from helix.commands.simulate import add_spec_args, format_result, precision_from_args
from helix.errors import HelixInputError
from helix.flags import integer
from helix.layout import STRATEGIES
from helix.report import new_figure, plot_frontiers, save_figure, write_frontiers_csv, write_points_csv
from helix.specs import load_model, parse_tokens
from helix.step import simulate

LONG_SWEEP_POINTS = 200_000  # show a progress line above this many points


def _inputs(args):
    """Every input validated before any work or any file is written."""
    model = load_model(args.model)
    hw = hardware_from_args(args)
    context = parse_tokens(args.context)
    precision = precision_from_args(args)
    strategies = search.check_strategies(args.strategies)
    if not 1 <= args.max_gpus <= 4096:
        raise HelixInputError("--max-gpus", f"must be an integer in 1..4096, got {args.max_gpus}")
    options = options_from_args(args)
    if args.tbo and "dp_ep" not in strategies:
        raise HelixInputError("--tbo", f"two-batch overlap applies to dp_ep points; it conflicts with --strategies "
                              f"{','.join(strategies)}")
    return model, hw, context, precision, strategies, options


def _check_out(path: str | None) -> Path | None:
    """Before any work: --out is a new folder, or an earlier sweep's (replaced whole, see helix.outputs)."""
    if path is None:
        return None
    return outputs.check_destination("--out", path, replaces="points.csv", command="helix sweep")


def _point_line(p: search.Points, i: int) -> str:
    return (f"{p.describe(i):<58} TTL {p.ttl_s[i] * 1e3:8.3f} ms  {p.tokens_per_s_per_user[i]:8.2f} tok/s/user  "
            f"{p.tokens_per_s_per_gpu[i]:9.3f} tok/s/GPU  {int(p.users[i]):5d} users")


def run_sweep(args) -> int:
    model, hw, context, precision, strategies, options = _inputs(args)
    out = _check_out(args.out)
    expected = sum(len(search.enumerate_layouts(model, s, args.max_gpus, options["allow_uneven"],
                                                options["redundant_experts"])["tpa"]) for s in strategies)
    sw = search.sweep(model, hw, context, strategies=strategies, max_gpus=args.max_gpus, precision=precision,
                      overlap="serial" if args.no_hopb else "auto",
                      progress=expected * 100 > LONG_SWEEP_POINTS and not args.quiet, **options)
    c = sw.counts()
    print(f"{model.name} on {hw.name}, context {context:,} tokens, 1..{args.max_gpus} GPUs, "
          f"{len(sw.batch_grid)} batch sizes 1..{int(sw.batch_grid[-1])}")
    print(f"{c['evaluated']:,} points evaluated in {sw.wall_s:.2f} s ({c['evaluated'] / max(sw.wall_s, 1e-9):,.0f} "
          f"points/s), {c['feasible']:,} feasible; dropped: "
          + ", ".join(f"{k} {v:,}" for k, v in c["dropped"].items()))
    print(f"\n{'strategy':<10}{'layouts':>9}{'points':>10}{'feasible':>10}  dropped")
    for s, v in c["per_strategy"].items():
        drops = ", ".join(f"{k} {n:,}" for k, n in v["dropped"].items() if n)
        print(f"{s:<10}{v['layouts']:>9,}{v['evaluated']:>10,}{v['feasible']:>10,}  {drops or '-'}")
    fronts = search.frontiers(sw.points, strategies)
    print("\nbest configurations (lowest TTL, then highest tokens/s/GPU, per frontier):")
    for name, f in fronts.items():
        if len(f) == 0:
            print(f"  {name:<9} no feasible point")
            continue
        for i in dict.fromkeys((int(np.argmax(f.tokens_per_s_per_user)), int(np.argmax(f.tokens_per_s_per_gpu)))):
            print(f"  {name:<9} {_point_line(f, i)}")
    if out is not None:
        with outputs.output_dir(out, "helix sweep") as tmp:  # the previous sweep stays until this one is whole
            write_points_csv(tmp / "points.csv", sw.points)
            write_frontiers_csv(tmp / "frontier.csv", fronts)
            fig, ax = new_figure(1, width=7.0, height=5.0)
            plot_frontiers(ax, fronts, strategies=[s for s in strategies if len(fronts.get(s, []))])
            ax.set_title(f"{model.name}, {context:,} tokens, {hw.name}, ≤ {args.max_gpus} GPUs")
            save_figure(fig, tmp / "frontier.png")
        print(f"\nwrote {out / 'points.csv'}, {out / 'frontier.csv'}, {out / 'frontier.png'}")
    return 0


def _chosen(model, hw, precision, context, p: search.Points, i: int, overlap: str, options: dict) -> dict:
    layout = p.layout(i)
    chosen = {k: v for k, v in options.items() if not (k == "tbo" and layout.strategy != "dp_ep")}
    r = simulate(model, hw, layout, int(p.batch[i]), context, precision, overlap=overlap, **chosen)
    return {"layout": layout.describe(), "batch_size": int(p.batch[i]), "users": int(p.users[i]),
            "num_gpus": int(p.num_gpus[i]), **r.to_dict(), "_result": r, "_layout": layout}


def run_best(args) -> int:
    model, hw, context, precision, strategies, options = _inputs(args)
    budget_ms = args.ttl_budget_ms
    if not math.isfinite(budget_ms) or budget_ms <= 0:
        raise HelixInputError("--ttl-budget-ms", f"must be a positive number of milliseconds, got {budget_ms}")
    overlap = "serial" if args.no_hopb else "auto"
    sw = search.sweep(model, hw, context, strategies=strategies, max_gpus=args.max_gpus, precision=precision,
                      overlap=overlap, **options)
    feas = sw.feasible
    ok = feas.take(feas.ttl_s <= budget_ms * 1e-3)
    if len(ok) == 0:
        best = f"; the lowest feasible TTL is {feas.ttl_s.min() * 1e3:.3f} ms" if len(feas) else ""
        msg = f"no feasible configuration within {budget_ms:g} ms{best}"
        print(json.dumps({"error": msg}) if args.json else msg)
        return 1
    # ties broken towards fewer GPUs, then lower TTL
    thr = int(np.lexsort((ok.ttl_s, ok.num_gpus, -ok.tokens_per_s_per_gpu))[0])
    users = int(np.lexsort((ok.ttl_s, ok.num_gpus, -ok.tokens_per_s_per_gpu, -ok.users))[0])
    picks = {"most_tokens_per_s_per_gpu": _chosen(model, hw, precision, context, ok, thr, overlap, options),
             "most_users": _chosen(model, hw, precision, context, ok, users, overlap, options)}
    if args.json:
        data = {"model": model.name, "hardware": hw.name, "engine": hw.engine or "none", "options": options,
                "context_tokens": context, "ttl_budget_ms": budget_ms,
                "max_gpus": args.max_gpus, "strategies": list(strategies), "points_evaluated": len(sw.points),
                "points_within_budget": len(ok),
                **{k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in picks.items()}}
        print(json.dumps(data, indent=2))
        return 0
    print(f"{model.name} on {hw.name}, context {context:,} tokens, TTL budget {budget_ms:g} ms: "
          f"{len(ok):,} of {len(sw.points):,} points fit\n")
    for title, key in (("Most tokens/s/GPU within the budget", "most_tokens_per_s_per_gpu"),
                       ("Most users within the budget", "most_users")):
        d = picks[key]
        print(f"== {title}: {d['layout']}, batch {d['batch_size']} ({d['users']} users)")
        label = "HOP-B off" if overlap == "serial" else "default overlap"
        print(format_result(d["_result"], model, hw, d["_layout"], d["batch_size"], context, label))
        print()
    return 0


def _common(p) -> None:
    add_spec_args(p)
    p.add_argument("--max-gpus", type=integer, default=64, help="largest GPU count N x PP (default: %(default)s)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated subset of " + ", ".join(STRATEGIES) + " (default: all)")
    p.add_argument("--no-hopb", action="store_true", help="Helix without HOP-B (all-to-all exposed)")
    add_option_args(p, tbo_help="dp_ep points run two-batch overlap (two micro-batches, dispatch/combine hidden "
                                "behind the other's compute)")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="every layout x batch: counts, Pareto frontiers, points.csv, frontier.png",
                       description="Enumerate every valid layout of each strategy on 1..MAX_GPUS GPUs and every "
                                   "batch size up to the memory limit; evaluate them vectorised; print counts by "
                                   "reason and the best configurations; optionally write CSVs and a figure.",
                       epilog="example: helix sweep --model deepseek-r1 --context 1M --out sweep-dsr1/")
    _common(p)
    p.add_argument("--out", default=None, help="directory for points.csv, frontier.csv, frontier.png")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run_sweep)

    p = sub.add_parser("best", help="the layouts and batch with the most tokens/s/GPU and the most users "
                                    "within a TTL budget",
                       description="Search every layout and batch, keep the feasible points with TTL <= the "
                                   "budget, and print the one with the most tokens/s/GPU and the one with the most "
                                   "concurrent users, each with its term-by-term breakdown.",
                       epilog="example: helix best --model llama-3.1-405b --context 1M --ttl-budget-ms 20")
    _common(p)
    p.add_argument("--ttl-budget-ms", type=float, required=True, help="token-to-token latency budget in ms")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.set_defaults(func=run_best)
