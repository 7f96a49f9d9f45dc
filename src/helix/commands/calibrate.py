"""``helix calibrate``: measure this machine into a hardware profile, or refit the GPU op models from
NVIDIA's measured tables (``--from-perf-db``, no torch needed).

Thin: parse, call helix.validation.calibrate, print a table and a last line of JSON. Bad input, and a
destination that cannot be written (checked with a real probe file, helix.outputs.check_destination),
raise HelixInputError before anything is measured. The three files of one run are written with SIGINT /
SIGTERM held (helix.outputs.committing), each through a temporary name, so an interrupted run leaves the
previous files or the new ones.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from helix import outputs, progress
from helix.commands.torch_commands import INSTALL, has_torch
from helix.errors import HelixInputError
from helix.flags import integer
from helix.specs.hardware import load_hardware
from helix.validation.measurement import measurements_csv
from helix.validation.profile import profile_yaml, single_rank_path


def yaml_path(field: str, text: str) -> Path:
    """The profile path: .yaml, not a folder, its folder writable (missing folders are created)."""
    if text.strip() and Path(text).suffix not in (".yaml", ".yml"):
        raise HelixInputError(field, f"must end in .yaml or .yml, got {text!r}")
    return outputs.check_destination(field, text, kind="file", parents=True)


def _check(args: argparse.Namespace) -> tuple[Path, int]:
    """(the profile path, the largest group) once every flag is known good; nothing measured yet."""
    for flag, value in (("--hardware", args.hardware), ("--engine", args.engine), ("--out-dir", args.out_dir)):
        if value is not None:
            raise HelixInputError(flag, "only applies with --from-perf-db")
    if args.json:
        raise HelixInputError("--json", "only applies with --from-perf-db")
    out = yaml_path("--out", "profile.yaml" if args.out is None else args.out)
    cores = os.cpu_count() or 1
    if args.max_ranks is not None and not 1 <= args.max_ranks <= cores:
        raise HelixInputError("--max-ranks", f"must be 1 to this machine's {cores} cores (one process per rank, "
                                             f"each on its own core), got {args.max_ranks}")
    if args.name is not None and not (args.name.strip() and args.name.isprintable() and len(args.name) <= 100):
        raise HelixInputError("--name", f"must be 1 to 100 printable characters (or left out: cpu-<host>), "
                                        f"got {args.name!r}")
    if not has_torch():
        raise HelixInputError("--from-perf-db", f"measuring this machine needs torch ({INSTALL}); only "
                                                "--from-perf-db runs without it")
    return out, cores if args.max_ranks is None else args.max_ranks


def _write(out: Path, result):
    """The profile, its single-rank variant and the raw measurements, all or none; each must load.
    Returns the measurements' path and the profile as loaded."""
    measurements_path = out.with_name(out.stem + ".measurements.csv")
    single = single_rank_path(out)
    with outputs.committing():  # the three files of one run, or the previous ones
        outputs.write_atomic(measurements_path, measurements_csv(result.measurements))
        outputs.write_atomic(out, profile_yaml(result.profile))
        if result.single_rank_profile is not None:
            outputs.write_atomic(single, profile_yaml(result.single_rank_profile))
        else:
            single.unlink(missing_ok=True)  # a stale one would describe another run
    hw = load_hardware(out)  # the profile must load: fail loudly here rather than in `helix validate`
    if result.single_rank_profile is not None:
        load_hardware(single)
    return measurements_path, hw


def _report(out: Path, measurements_path: Path, hw, result) -> None:
    print(f"{'field':<34} {'value':>12}  source")
    for key, entry in result.profile.items():
        if isinstance(entry, dict):
            value = entry["value"]
            shown = f"{value:>12.4g}" if isinstance(value, int | float) else f"{','.join(value):>12}"
            print(f"{key:<34} {shown}  {entry['source'][:90]}")
    summary = {"profile": str(out), "measurements": str(measurements_path), "name": hw.name,
               "wall_s": round(result.wall_s, 1),
               "hbm_bytes_per_s": hw.hbm_bytes_per_s, "peak_flops_per_s_fp32": hw.peak_flops_per_s_bf16,
               "kernel_launch_s": hw.kernel_launch_s, "step_overhead_s": hw.step_overhead_s,
               "link_bytes_per_s_per_direction": hw.link_bytes_per_s_per_direction,
               "sync_latency_s": hw.sync_latency_s}
    if result.collective_fit is not None:
        summary["collective_fit_median_abs_error"] = round(result.collective_fit.median_abs_error, 4)
    if result.single_rank_profile is not None:
        summary["single_rank_profile"] = str(single_rank_path(out))
    print(json.dumps(summary))


def run(args: argparse.Namespace) -> int:
    if args.from_perf_db:
        if args.out_dir is not None and args.out_dir.strip():  # unwritable: refused before minutes of fitting
            outputs.check_destination("--out-dir", args.out_dir, parents=True)
        from helix.validation.perf_db import command as perf_db  # scipy: ~0.2 s, paid only when it runs

        return perf_db.run(args)
    out, ranks = _check(args)
    from helix.validation import calibrate as cal  # torch: imported when the command runs (torch_commands)

    with progress.bar(len(cal.STAGES), "calibrate", "stages") as shown:  # stderr, only when it is a terminal
        def stage(name: str) -> None:
            shown.set_postfix_str(name, refresh=False)
            shown.update(1)

        result = cal.calibrate(quick=args.quick, group_sizes=cal.default_group_sizes(ranks), name=args.name or "",
                               progress=stage)
    _report(out, *_write(out, result), result)
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
    p.set_defaults(func=run)
