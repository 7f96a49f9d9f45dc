"""``helix gpu-check``: single-GPU calibration and op validation on a CUDA machine (helix.validation.gpu_check).

Thin: parse, check the destination, run, print what was written. ``--cpu-smoke`` runs the same pipeline
with tiny sizes on the CPU: it tests the check and validates nothing. Absent where torch is not installed
(helix.commands.torch_commands). Each file is written through a temporary name.
"""

from __future__ import annotations

import argparse
import time

from helix import outputs

NEEDS_TORCH = True  # helix.cli leaves this command out without torch


def run(args: argparse.Namespace) -> int:
    out = outputs.check_destination("--out", args.out, parents=True)  # before any device work
    t0 = time.perf_counter()
    from helix.validation import gpu_check  # torch: imported when the command runs (torch_commands)

    dev = gpu_check.device(args.cpu_smoke)  # no GPU (and no --cpu-smoke): one line, nothing written
    out.mkdir(parents=True, exist_ok=True)
    paths = gpu_check.run(out, dev, smoke=args.cpu_smoke)
    print(f"wrote {', '.join(str(p) for p in paths[:3])} in {time.perf_counter() - t0:.0f} s")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("gpu-check", help="single-GPU calibration and decode-op validation (CUDA)",
                              description="On one CUDA GPU (~1 minute): measure HBM streaming, bf16/FP8 matmul "
                                          "FLOP/s and the per-kernel overhead into profile-<device>.yaml, then time "
                                          "GQA and MLA decode attention and decode GEMMs against the simulator's "
                                          "roofline under the h100/h200 preset and that profile: "
                                          "gpu_validation.csv, .md and .png in --out.",
                              epilog="example: helix gpu-check --out gpu-check/")
    p.add_argument("--out", required=True, help="output directory (4 files)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: tests the check only")
    p.set_defaults(func=run)
