"""``helix calibrate`` and ``helix validate``: measure this machine, then hold the simulator against it.

Thin: parse, call helix.validation.calibrate / validate, print a table and a last line of JSON.
Bad input, and a destination that cannot be written (checked with a real probe file,
helix.outputs.check_destination), raise HelixInputError before anything is measured. Every file
is written through a temporary name, and the set is written with SIGINT / SIGTERM held
(helix.outputs.committing), so an interrupted run leaves the previous files or the new ones.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from helix import outputs
from helix.errors import HelixInputError
from helix.flags import integer


def _yaml_path(field: str, text: str) -> Path:
    """The profile path: .yaml, not a folder, its folder writable (missing folders are created)."""
    if text.strip() and Path(text).suffix not in (".yaml", ".yml"):
        raise HelixInputError(field, f"must end in .yaml or .yml, got {text!r}")
    return outputs.check_destination(field, text, kind="file", parents=True)


# ---------------------------------------------------------------- calibrate


def _run_calibrate(args: argparse.Namespace) -> int:
    if args.from_perf_db:
        if args.out_dir is not None and args.out_dir.strip():  # unwritable: refused before minutes of fitting
            outputs.check_destination("--out-dir", args.out_dir, parents=True)
        from helix.validation.perf_db import command as perf_db

        return perf_db.run(args)
    for flag, value in (("--hardware", args.hardware), ("--engine", args.engine), ("--out-dir", args.out_dir)):
        if value is not None:
            raise HelixInputError(flag, "only applies with --from-perf-db")
    if args.json:
        raise HelixInputError("--json", "only applies with --from-perf-db")
    out = _yaml_path("--out", "profile.yaml" if args.out is None else args.out)
    cores = os.cpu_count() or 1
    if args.max_ranks is not None and not 1 <= args.max_ranks <= cores:
        raise HelixInputError("--max-ranks", f"must be 1 to this machine's {cores} cores (one process per rank, "
                                             f"each on its own core), got {args.max_ranks}")
    if args.name is not None and not (args.name.strip() and args.name.isprintable() and len(args.name) <= 100):
        raise HelixInputError("--name", f"must be 1 to 100 printable characters (or left out: cpu-<host>), "
                                        f"got {args.name!r}")
    from helix.validation import calibrate as cal

    limit = cores if args.max_ranks is None else args.max_ranks
    from helix.progress import bar

    with bar(len(cal.STAGES), "calibrate", "stages") as shown:  # stderr, only when it is a terminal
        def stage(name: str) -> None:
            shown.set_postfix_str(name, refresh=False)
            shown.update(1)

        cal_result = cal.calibrate(quick=args.quick, group_sizes=cal.default_group_sizes(limit), name=args.name or "",
                                   progress=stage)
    measurements_path = out.with_name(out.stem + ".measurements.csv")
    from helix.specs.hardware import load_hardware

    single = cal.single_rank_path(out)
    with outputs.committing():  # the three files of one run, or the previous ones
        cal.write_atomic(measurements_path, cal.measurements_csv(cal_result.measurements))
        cal.write_atomic(out, cal.profile_yaml(cal_result.profile))
        if cal_result.single_rank_profile is not None:
            cal.write_atomic(single, cal.profile_yaml(cal_result.single_rank_profile))
        else:
            single.unlink(missing_ok=True)  # a stale one would describe another run
    hw = load_hardware(out)  # the profile must load: fail loudly here rather than in `helix validate`
    if cal_result.single_rank_profile is not None:
        load_hardware(single)
    print(f"{'field':<34} {'value':>12}  source")
    for key, entry in cal_result.profile.items():
        if isinstance(entry, dict):
            value = entry["value"]
            shown = f"{value:>12.4g}" if isinstance(value, int | float) else f"{','.join(value):>12}"
            print(f"{key:<34} {shown}  {entry['source'][:90]}")
    summary = {"profile": str(out), "measurements": str(measurements_path), "name": hw.name,
               "wall_s": round(cal_result.wall_s, 1),
               "hbm_bytes_per_s": hw.hbm_bytes_per_s, "peak_flops_per_s_fp32": hw.peak_flops_per_s_bf16,
               "kernel_launch_s": hw.kernel_launch_s, "step_overhead_s": hw.step_overhead_s,
               "link_bytes_per_s_per_direction": hw.link_bytes_per_s_per_direction,
               "sync_latency_s": hw.sync_latency_s}
    if cal_result.collective_fit is not None:
        summary["collective_fit_median_abs_error"] = round(cal_result.collective_fit.median_abs_error, 4)
    if cal_result.single_rank_profile is not None:
        summary["single_rank_profile"] = str(single)
    print(json.dumps(summary))
    return 0


# ---------------------------------------------------------------- validate

MAX_REPEATS = 10_000  # timed steps per point: a median needs tens; 10^4 already runs for hours


def _run_validate(args: argparse.Namespace) -> int:
    from helix.specs.hardware import load_hardware

    hw = load_hardware(args.hardware)  # raises HelixInputError on a bad file
    out = outputs.check_destination("--out", args.out, parents=True)  # its files are replaced one by one
    if args.repeats is not None and not 1 <= args.repeats <= MAX_REPEATS:
        raise HelixInputError("--repeats", f"must be 1 to {MAX_REPEATS:,} (each repeat times every point of the "
                                           f"grid once; the default is 25), got {args.repeats}")
    from helix.validation import tables
    from helix.validation import validate as val

    grid = val.tiny_grid() if args.quick else val.default_grid(os.cpu_count() or 1)
    from helix.validation.calibrate import single_rank_path

    single = single_rank_path(Path(args.hardware))
    hw_single = load_hardware(single) if Path(args.hardware).suffix in (".yaml", ".yml") and single.exists() else None
    from helix.progress import bar

    with bar(len(grid.points), "validate", "points") as shown:  # stderr, only when it is a terminal
        def step(label: str, n: int) -> None:
            shown.set_postfix_str(label, refresh=False)
            shown.update(n)

        result = val.run_validation(grid, hw, repeats=args.repeats, progress=step, hw_single_rank=hw_single)
    with outputs.committing():  # the figure and the three files, or the previous ones (each file atomic)
        paths = tables.write_outputs(result, out)
    print(tables.format_table(result))
    print(json.dumps({"out": str(out), "files": [str(p) for p in paths], **result.summary_json()}))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="measure this machine and write a hardware profile YAML, or "
                                                "refit the GPU op models from NVIDIA's measured tables",
                              description="Measure memory bandwidth, the runtime's attention, matmul FLOP/s, "
                                          "the runtime's fixed cost per op and the distributed backend's "
                                          "collectives (one process per core); fit the simulator's alpha-beta "
                                          "form; write a profile for --hardware, and a single-rank variant "
                                          "beside it. About 30 s on 2 cores. With --from-perf-db: refit the "
                                          "op-model presets (GEMM, attention, MLA, MoE, elementwise, "
                                          "collective forms) from aiconfigurator-core's measured kernel tables "
                                          "for GB200, B200, H200 and H100 x TensorRT-LLM and SGLang, and print "
                                          "each table's held-out error (about 5 minutes for all).",
                              epilog="example: helix calibrate --from-perf-db --hardware h200 --engine sglang --json")
    p.add_argument("--out", default=None, help="profile path (.yaml, default profile.yaml); raw measurements go "
                                              "beside it")
    p.add_argument("--name", default=None, help="profile name (default cpu-<host>)")
    p.add_argument("--max-ranks", type=integer, default=None, help="largest collective group (default: cores)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds: a smoke test, not a profile")
    p.add_argument("--from-perf-db", action="store_true",
                   help="refit the op-model presets from aiconfigurator-core (pip install -e \".[perf-db]\")")
    p.add_argument("--hardware", default=None, help="with --from-perf-db: gb200-nvl72, b200, h200, h100 or all "
                                                   "(default: all)")
    p.add_argument("--engine", default=None, help="with --from-perf-db: trtllm, sglang or all (default: all)")
    p.add_argument("--out-dir", default=None, help="with --from-perf-db: where the op-model files go (default: "
                                                  "the package's presets, specs/presets/hardware/op_models)")
    p.add_argument("--json", action="store_true", help="with --from-perf-db: print {\"tables\": [...]} as JSON")
    p.set_defaults(func=_run_calibrate)

    v = subparsers.add_parser("validate", help="time the runtime's decode step and compare with the simulator",
                              description="Run the runtime's decode step over a grid (layouts with a core per "
                                          "rank: Helix KVP, TP, HOP-B on/off; batch 1-8; context 4K-64K), "
                                          "predict each point with the simulator and --hardware, write "
                                          "validation.md (errors per point and per term, shape checks), CSVs "
                                          "and a predicted-vs-measured plot. About 2 minutes on 2 cores.")
    v.add_argument("--hardware", default="profile.yaml", help="profile from `helix calibrate` (or a preset)")
    v.add_argument("--out", default="validation", help="output directory")
    v.add_argument("--repeats", type=integer, default=None, help="timed steps per point (default 25; 3 with --quick)")
    v.add_argument("--quick", action="store_true", help="a tiny grid (seconds), for smoke tests")
    v.set_defaults(func=_run_validate)
