"""``helix sweep`` (every layout x batch, frontiers, counts by reason) and ``helix best`` (planning under a
TTL budget, with the term-by-term breakdown of the chosen configurations)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from helix import outputs, search, search_budget
from helix.commands import best_answer
from helix.commands.domain_args import hardware_with_scale_out
from helix.commands.layout_args import add_option_args, check_routing_for_model, hardware_from_args, options_from_args
from helix.commands.model_arg import load_model_arg
from helix.commands.simulate import add_spec_args, format_result, precision_from_args, warn_context
from helix.errors import HelixInputError
from helix.flags import integer
from helix.layout import STRATEGIES
from helix.report import new_figure, plot_frontiers, save_figure, write_frontiers_csv
from helix.specs import parse_tokens
from helix.step import simulate

LONG_SWEEP_POINTS = 200_000  # show a progress bar above this many points (stderr a terminal, not --quiet)
CSV_CHUNK_ROWS = 50_000  # points.csv is written this many rows at a time, each chunk a step of its bar


def _write_points_csv(path: Path, p: search.Points, quiet: bool) -> None:
    """points.csv as ``helix.report.write_points_csv`` writes it, chunk by chunk under a progress bar."""
    import csv

    from helix.progress import bar
    from helix.report import POINT_COLUMNS, point_rows

    with open(path, "w", newline="") as f, bar(len(p), f"writing {path.name}", "points", quiet=quiet) as shown:
        w = csv.writer(f)
        w.writerow(POINT_COLUMNS)
        for lo in range(0, len(p), CSV_CHUNK_ROWS):
            chunk = p.take(slice(lo, lo + CSV_CHUNK_ROWS))
            w.writerows(point_rows(chunk))
            shown.update(len(chunk))


def _write_points_parquet(path: Path, p: search.Points) -> None:
    """points.parquet: the columns of points.csv, typed (one row group per CSV chunk); needs pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from helix.report import POINT_COLUMNS, point_rows

    writer = None
    try:
        for lo in range(0, max(len(p), 1), CSV_CHUNK_ROWS):
            rows = point_rows(p.take(slice(lo, lo + CSV_CHUNK_ROWS)))
            table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(POINT_COLUMNS)})
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _check_parquet(args) -> None:
    if not args.parquet:
        return
    if args.out is None:
        raise HelixInputError("--parquet", "writes points.parquet into --out DIR: add --out or drop it")
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise HelixInputError("--parquet", "needs pyarrow: pip install -e \".[parquet]\" (or write points.csv "
                                           "without --parquet)")


def _inputs(args):
    """Every input validated before any work or any file is written."""
    model = load_model_arg(args.model)
    hw = hardware_with_scale_out(hardware_from_args(args), args)
    context = parse_tokens(args.context)
    precision = precision_from_args(args, model, hw)
    strategies = search.check_strategies(args.strategies)
    if args.max_gpus is not None and not 1 <= args.max_gpus <= 4096:
        raise HelixInputError("--max-gpus", f"must be an integer in 1..4096, got {args.max_gpus}")
    args.gpu_counts_set, args.max_gpus = search_budget.resolve_gpu_counts(args.total_gpus, args.gpu_counts,
                                                                          args.max_gpus)
    options = options_from_args(args)
    check_routing_for_model(args, model)
    if args.tbo and "dp_ep" not in strategies:
        raise HelixInputError("--tbo", f"two-batch overlap applies to dp_ep points; it conflicts with --strategies "
                              f"{','.join(strategies)}")
    warn_context(model, context)
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
    _check_parquet(args)
    if args.feasible_only and out is None:
        raise HelixInputError("--feasible-only", "filters points.csv, which only --out DIR writes: add --out or "
                                                 "drop it")
    counts = args.gpu_counts_set
    expected = sum(len(search.enumerate_layouts(model, s, args.max_gpus, options["allow_uneven"],
                                                options["redundant_experts"], counts)["tpa"]) for s in strategies)
    sw = search.sweep(model, hw, context, strategies=strategies, max_gpus=args.max_gpus, precision=precision,
                      gpu_counts=counts,
                      overlap="serial" if args.no_hopb else "auto",
                      progress=expected * 100 > LONG_SWEEP_POINTS and not args.quiet, **options)
    c = sw.counts()
    gpus = f"1..{args.max_gpus}" if counts is None else ",".join(map(str, counts))
    print(f"{model.name} on {hw.name}, context {context:,} tokens, {gpus} GPUs, "
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
        written = sw.feasible if args.feasible_only else sw.points
        with outputs.output_dir(out, "helix sweep") as tmp:  # the previous sweep stays until this one is whole
            if args.parquet:
                _write_points_parquet(tmp / "points.parquet", written)
            else:
                _write_points_csv(tmp / "points.csv", written, quiet=args.quiet or len(written) <= LONG_SWEEP_POINTS)
            write_frontiers_csv(tmp / "frontier.csv", fronts)
            fig, ax = new_figure(1, width=7.0, height=5.0)
            plot_frontiers(ax, fronts, strategies=[s for s in strategies if len(fronts.get(s, []))])
            ax.set_title(f"{model.name}, {context:,} tokens, {hw.name}, ≤ {args.max_gpus} GPUs")
            save_figure(fig, tmp / "frontier.png")
        dropped = f" ({len(sw.points) - len(written):,} infeasible points dropped: --feasible-only)" \
            if args.feasible_only else ""
        print(f"\nwrote {out / ('points.parquet' if args.parquet else 'points.csv')} ({len(written):,} points)"
              f"{dropped}, {out / 'frontier.csv'}, "
              f"{out / 'frontier.png'}")
    return 0


def _chosen(model, hw, precision, context, p: search.Points, i: int, overlap: str, options: dict) -> dict:
    layout = p.layout(i)
    chosen = {k: v for k, v in options.items() if not (k == "tbo" and layout.strategy != "dp_ep")}
    r = simulate(model, hw, layout, int(p.batch[i]), context, precision, overlap=overlap, **chosen)
    return {"layout": layout.describe(), "layout_fields": search_budget.layout_fields(layout),
            "batch_size": int(p.batch[i]), "users": int(p.users[i]),
            "num_gpus": int(p.num_gpus[i]), **r.to_dict(), "_result": r, "_layout": layout}


def run_best(args) -> int:
    sla = search_budget.sla_from_args(args.ttl_budget_ms, args.tpot_ms, args.min_tokens_per_s_per_user)
    model, hw, context, precision, strategies, options = _inputs(args)
    budget_ms = None if sla.ttl_budget_s is None else sla.ttl_budget_s * 1e3
    if args.top is not None and args.top < 1:
        raise HelixInputError("--top", f"must be an integer >= 1, got {args.top}")
    emit = best_answer.check_emit(args)  # before any work: --emit / --out agree and --out is writable
    overlap = "serial" if args.no_hopb else "auto"
    sw = search.sweep(model, hw, context, strategies=strategies, max_gpus=args.max_gpus, precision=precision,
                      overlap=overlap, gpu_counts=args.gpu_counts_set, **options)
    feas = sw.feasible
    ok = feas.take(sla.mask(feas))
    if len(ok) == 0:
        best = f"; the lowest feasible TTL is {feas.ttl_s.min() * 1e3:.3f} ms" if len(feas) else ""
        msg = f"no feasible configuration {sla.within()}{best}"
        print(json.dumps({"error": msg}) if args.json else msg)
        return 1
    # ties broken towards fewer GPUs, then lower TTL
    thr = search_budget.best_index(ok)
    users = search_budget.best_index(ok, by_users=True)
    picks = {"most_tokens_per_s_per_gpu": _chosen(model, hw, precision, context, ok, thr, overlap, options),
             "most_users": _chosen(model, hw, precision, context, ok, users, overlap, options)}
    answer = best_answer.answer(ok, args.top)
    emitted = best_answer.emit(emit, model, hw, precision, context, sw.feasible, picks["most_tokens_per_s_per_gpu"],
                               overlap, options) if emit else None
    if args.json:
        data = {"model": model.name, "hardware": hw.name, "engine": hw.engine or "none", "options": options,
                "context_tokens": context, "ttl_budget_ms": budget_ms, "sla": sla.to_dict(),
                "max_gpus": args.max_gpus, "gpu_counts": list(args.gpu_counts_set or ()) or None,
                "strategies": list(strategies), "points_evaluated": len(sw.points),
                "points_within_budget": len(ok),
                **{k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in picks.items()},
                **answer, **({"emitted": emitted} if emitted else {})}
        print(json.dumps(data, indent=2))
        return 0
    print(f"{model.name} on {hw.name}, context {context:,} tokens, {sla.describe()}: "
          f"{len(ok):,} of {len(sw.points):,} points fit\n")
    print(best_answer.format_answer(answer) + "\n")
    for title, key in (("Most tokens/s/GPU within the budget", "most_tokens_per_s_per_gpu"),
                       ("Most users within the budget", "most_users")):
        d = picks[key]
        print(f"== {title}: {d['layout']}, batch {d['batch_size']} ({d['users']} users)")
        label = "HOP-B off" if overlap == "serial" else "default overlap"
        print(format_result(d["_result"], model, hw, d["_layout"], d["batch_size"], context, label))
        print()
    if emitted:
        print(best_answer.format_emitted(emitted))
    return 0


def _common(p) -> None:
    add_spec_args(p)
    p.add_argument("--max-gpus", type=integer, default=None, help="largest GPU count N x PP (default: 64)")
    p.add_argument("--total-gpus", type=integer, default=None, help="exactly this many GPUs (N x PP)")
    p.add_argument("--gpu-counts", default=None, help="only these GPU counts N x PP, e.g. 8,16,32,64")
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
    p.add_argument("--feasible-only", action="store_true",
                   help="points.csv keeps only the feasible points (the message says how many were dropped)")
    p.add_argument("--parquet", action="store_true",
                   help="write the points as points.parquet (typed columns, a fraction of the CSV's size) instead "
                        "of points.csv; needs pyarrow (pip install -e \".[parquet]\")")
    p.add_argument("--quiet", action="store_true", help="no progress bars (drawn only when stderr is a terminal)")
    p.set_defaults(func=run_sweep)

    p = sub.add_parser("best", help="the layouts and batch with the most tokens/s/GPU and the most users "
                                    "within a TTL budget",
                       description="Search every layout and batch, keep the feasible points with TTL <= the "
                                   "budget, and print the one with the most tokens/s/GPU and the one with the most "
                                   "concurrent users, each with its term-by-term breakdown.",
                       epilog="examples:\n  helix best --model llama-3.1-405b --context 1M --ttl-budget-ms 20\n"
                              "  helix best --model deepseek-r1 --context 1M --total-gpus 64 --tpot-ms 20 "
                              "--emit trtllm --out deploy/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--ttl-budget-ms", type=float, default=None, help="the SLA: token-to-token latency budget in ms")
    p.add_argument("--tpot-ms", type=float, default=None,
                   help="the same SLA as serving benchmarks name it (time per output token, ms)")
    p.add_argument("--min-tokens-per-s-per-user", type=float, default=None,
                   help="the SLA as a floor on tokens/s/user (with MTP, more than 1000 / TTL)")
    p.add_argument("--top", type=integer, default=None, help="also list the K best distinct layouts within the SLA")
    best_answer.add_emit_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.set_defaults(func=run_best)
