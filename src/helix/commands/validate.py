"""``helix validate``: time the runtime's decode step over a grid and hold the simulator against it.

Thin: parse, call helix.validation.validate, write the tables (helix.validation.tables), print a table and
a last line of JSON. Bad input is HelixInputError before anything runs; the four files are written with
SIGINT / SIGTERM held (helix.outputs.committing), each through a temporary name. Absent where torch is
not installed (helix.commands.torch_commands).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from helix import outputs, progress
from helix.errors import HelixInputError
from helix.flags import integer
from helix.specs.hardware import load_hardware
from helix.validation import tables
from helix.validation.grid import default_grid, tiny_grid
from helix.validation.profile import single_rank_path

NEEDS_TORCH = True  # helix.cli leaves this command out without torch

MAX_REPEATS = 10_000  # timed steps per point: a median needs tens; 10^4 already runs for hours


def run(args: argparse.Namespace) -> int:
    hw = load_hardware(args.hardware)  # raises HelixInputError on a bad file
    out = outputs.check_destination("--out", args.out, parents=True)  # its files are replaced one by one
    if args.repeats is not None and not 1 <= args.repeats <= MAX_REPEATS:
        raise HelixInputError("--repeats", f"must be 1 to {MAX_REPEATS:,} (each repeat times every point of the "
                                           f"grid once; the default is 25), got {args.repeats}")
    grid = tiny_grid() if args.quick else default_grid(os.cpu_count() or 1)
    single = single_rank_path(Path(args.hardware))
    hw_single = load_hardware(single) if Path(args.hardware).suffix in (".yaml", ".yml") and single.exists() else None
    from helix.validation import validate as val  # torch: imported when the command runs (torch_commands)

    with progress.bar(len(grid.points), "validate", "points") as shown:  # stderr, only when it is a terminal
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
    v.set_defaults(func=run)
