"""``helix calibrate --from-perf-db``: refit the committed op-model presets from the installed
aiconfigurator-core tables and print each table's held-out error.

Deterministic: the same package version gives byte-identical files (sorted tables, a hash split,
rounded coefficients). Every flag is checked before any table is read or any file written.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from helix.errors import HelixInputError
from helix.validation.perf_db.forms import ENGINES, HARDWARE

ERROR_TARGETS = (0.10, 0.25)  # the bar: held-out median <= 10 %, p90 <= 25 %


def check_args(args) -> tuple[list[str], list[str], Path | None]:
    for flag, value in (("--out", args.out), ("--max-ranks", args.max_ranks), ("--name", args.name)):
        if value is not None:
            raise HelixInputError(flag, "measures this machine; it cannot be combined with --from-perf-db")
    if args.quick:
        raise HelixInputError("--quick", "measures this machine; it cannot be combined with --from-perf-db")
    hardware = list(HARDWARE) if args.hardware in (None, "all") else [args.hardware]
    if hardware[0] not in HARDWARE:
        raise HelixInputError("--hardware", f"no measured tables for {args.hardware!r}; allowed: "
                              f"{', '.join(HARDWARE)}, all (h800 uses the h100 files)")
    engines = list(ENGINES) if args.engine in (None, "all") else [args.engine]
    if engines[0] not in ENGINES:
        raise HelixInputError("--engine", f"unknown engine {args.engine!r}; allowed: {', '.join(ENGINES)}, all")
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise HelixInputError("--out-dir", f"{args.out_dir!r} exists and is not a directory")
    if importlib.util.find_spec("aiconfigurator_core") is None:
        raise HelixInputError("--from-perf-db", "needs the optional package aiconfigurator-core 0.12.0: "
                              "pip install -e \".[perf-db]\"")
    return hardware, engines, out_dir


def run(args) -> int:
    hardware, engines, out_dir = check_args(args)
    from helix.validation.perf_db import build, tables

    if tables.installed_version() != tables.PACKAGE_VERSION:
        raise HelixInputError("--from-perf-db", f"the presets are fitted to aiconfigurator-core "
                              f"{tables.PACKAGE_VERSION}, installed {tables.installed_version()}; "
                              f"pip install aiconfigurator-core=={tables.PACKAGE_VERSION}")
    target = out_dir or build.OP_MODEL_DIR
    fits, written = [], []
    for hw in hardware:
        for engine in engines:
            model, table_fits = build.build_op_model(hw, engine, progress=lambda line: print(line, file=sys.stderr))
            fits += table_fits
            if model is not None:
                path = build.op_model_path(target, hw, engine)
                build.write_atomic(path, build.op_model_json(hw, model))
                written.append(str(path))
    if args.json:
        print(json.dumps({"package": f"aiconfigurator-core {tables.PACKAGE_VERSION}",
                          "tables": [f.to_dict() for f in fits], "written": written}, indent=1))
        return 0
    median_max, p90_max = ERROR_TARGETS
    print(f"{'hardware':<13}{'engine':<8}{'table':<22}{'fit':>7}{'test':>7}{'median':>8}{'p90':>8}")
    for f in fits:
        flag = "" if f.median_abs_error <= median_max and f.p90_abs_error <= p90_max else "  above target"
        print(f"{f.hardware:<13}{f.engine:<8}{f.table:<22}{f.rows_fit:>7}{f.rows_test:>7}"
              f"{100 * f.median_abs_error:>7.1f}%{100 * f.p90_abs_error:>7.1f}%{flag}")
    print(f"\nerrors: |predicted / measured - 1| on the rows held out of each fit (one in five, by shape); "
          f"target median <= {100 * median_max:.0f} %, p90 <= {100 * p90_max:.0f} %")
    print("wrote " + ", ".join(written))
    return 0
