"""Single-GPU calibration and op validation (``helix gpu-check --out DIR``), torch worker code.

One short run for a lent H100/H200 (well under 4 minutes, no network, no collectives):

1. calibrate (helix.validation.gpu_calibration): HBM streaming read, bf16 (and FP8) matmul FLOP/s,
   per-kernel overhead eager and in a CUDA graph; writes ``DIR/profile-<device>.yaml`` (measured
   ceilings, efficiencies 1; links and collective latencies copied from the preset with their sources);
2. validate single-GPU decode ops (helix.validation.gpu_points: GQA and MLA attention, decode GEMMs)
   against ``helix.cost.ops.op_time_s`` under both the preset (``h100`` / ``h200``) and the profile;
3. write ``DIR/gpu_validation.csv``, ``.md`` and ``.png`` (device, date, error per point).

``smoke`` runs the same pipeline with tiny sizes on the CPU (perf_counter timing) to test it without a
GPU: its numbers validate nothing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from helix.cost.ops import op_time_s
from helix.errors import HelixInputError
from helix.outputs import write_atomic
from helix.specs.hardware import hardware_from_mapping, load_hardware
from helix.validation import fit, writers
from helix.validation.gpu_calibration import calibrate_device, profile_mapping
from helix.validation.gpu_points import Point, gemm_points, gqa_points, mla_points
from helix.validation.gpu_timer import Timer

FILES = ("gpu_validation.csv", "gpu_validation.md", "gpu_validation.png")


@dataclass(frozen=True)
class Device:
    name: str
    slug: str  # the name as a file name
    capacity_bytes: float
    preset: str  # the preset it is held against
    sms: int  # streaming multiprocessors (the split-KV shards fill two waves of them)


def device(smoke: bool) -> Device:
    """This machine's GPU, or the CPU stand-in of a smoke run; no GPU without ``smoke`` is bad input."""
    if smoke:
        return Device("cpu-smoke", "cpu-smoke", 8e9, "h100", 8)
    if not torch.cuda.is_available():
        raise HelixInputError("--cpu-smoke", "no CUDA device: run with --cpu-smoke to test the check on a CPU")
    props = torch.cuda.get_device_properties(0)
    name = torch.cuda.get_device_name(0)
    slug = "".join(c for c in name.lower().replace("nvidia ", "").replace(" ", "-") if c.isalnum() or c in "-._")
    return Device(name, slug, float(props.total_memory), "h200" if "H200" in name else "h100",
                  props.multi_processor_count)


def predictions(points: list[Point], profiles: dict) -> list[dict]:
    """Per point: the measurement, and per profile the roofline prediction and its error."""
    rows = []
    for p in points:
        row = {"op": p.op, "shape": p.shape, "bytes_read": p.bytes_read, "flops": p.flops,
               "measured_us": p.measured_s * 1e6, "eager_us": p.eager_s * 1e6,
               "achieved_GBps": p.bytes_read / p.measured_s / 1e9}
        for label, hw in profiles.items():
            pred = float(op_time_s(p.bytes_read, p.flops, hw, "bf16"))
            row[f"pred_{label}_us"] = pred * 1e6
            row[f"err_{label}"] = float(fit.relative_errors(pred, p.measured_s))
        row["note"] = p.note
        rows.append(row)
    return rows


def markdown(rows: list[dict], cal: dict, labels: list[str], header: str) -> str:
    lines = [header, "", "## Calibration", ""]
    lines += writers.markdown_table(["quantity", "measured"], [[k, f"{v:.4g}"] for k, v in cal.items()])
    lines += ["", "## Error summary (predicted − measured) / measured", ""]
    summary = []
    for op in sorted({r["op"] for r in rows}):
        for lab in labels:
            s = fit.summarize_errors([r[f"err_{lab}"] for r in rows if r["op"] == op])
            summary.append([op, lab, s["points"], f"{s['median_abs']:.1%}", f"{s['max_abs']:.1%}",
                            f"{s['median']:+.1%}"])
    lines += writers.markdown_table(["op", "profile", "points", "median abs", "worst abs", "median (bias)"], summary)
    lines += ["", "## Points", "", "Measured = CUDA-graph replay; eager = the same calls launched one by one.", ""]
    columns = ["op", "shape", "measured µs", "eager µs", "achieved GB/s"]
    lines += writers.markdown_table(
        columns + [f"{w} {lab}{' µs' if w == 'pred' else ''}" for lab in labels for w in ("pred", "err")],
        [[r["op"], r["shape"], f"{r['measured_us']:.1f}", f"{r['eager_us']:.1f}", f"{r['achieved_GBps']:.0f}"]
         + [v for lab in labels for v in (f"{r[f'pred_{lab}_us']:.1f}", f"{r[f'err_{lab}']:+.1%}")] for r in rows])
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], labels: list[str], title: str, path: Path) -> None:
    """Predicted vs measured per op, one panel per profile, each point's error written beside it."""
    fig, axes = writers.figure(len(labels))
    for ax, lab in zip(axes, labels, strict=True):
        writers.predicted_vs_measured(ax, [(r["op"], r["measured_us"], r[f"pred_{lab}_us"], r[f"err_{lab}"])
                                           for r in rows], xlabel="measured µs (CUDA graph)",
                                      ylabel=f"predicted µs ({lab})", title=f"{title}: {lab}")
    writers.save(fig, path)


def _measure_points(dev: Device, smoke: bool, t0: float) -> tuple[list[Point], Timer]:
    """Every section's points; a section that fails is reported and the others kept."""
    timer = Timer("cpu" if smoke else "cuda", graphs=not smoke)  # CUDA graphs, as serving engines replay them
    budget = 8e6 if smoke else 0.35 * dev.capacity_bytes
    points: list[Point] = []
    for section in (lambda: gqa_points(timer, smoke, budget, dev.sms),
                    lambda: mla_points(timer, smoke, budget, dev.sms), lambda: gemm_points(timer, smoke)):
        try:
            points += section()
        except Exception as exc:  # noqa: BLE001 - keep the other sections' points
            print(f"section failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not smoke:
            torch.cuda.empty_cache()
        print(f"[{time.perf_counter() - t0:.0f}s] {len(points)} points", flush=True)
    if timer.graph_failures:
        print(f"{timer.graph_failures} points timed eagerly (graph capture failed)", file=sys.stderr)
    return points, timer


def run(out: Path, dev: Device, smoke: bool) -> list[Path]:
    """The whole check on ``dev`` into ``out`` (which exists); the files written, the profile first."""
    t0 = time.perf_counter()
    cal = calibrate_device(Timer("cpu" if smoke else "cuda"), smoke)
    print(f"[{time.perf_counter() - t0:.0f}s] calibration: {cal}", flush=True)
    prof = profile_mapping(cal, dev.preset, dev.name, dev.capacity_bytes)
    profile_path = out / f"profile-{dev.slug}.yaml"
    write_atomic(profile_path, f"# {dev.name}, {time.strftime('%Y-%m-%d')}; helix gpu-check\n"
                 + yaml.safe_dump(prof, sort_keys=False, width=200))
    profiles = {dev.preset: load_hardware(dev.preset), "measured": hardware_from_mapping(profile_path.name, prof)}
    points, timer = _measure_points(dev, smoke, t0)
    rows, labels = predictions(points, profiles), list(profiles)
    note = ("> CPU smoke run: tiny sizes timed on the CPU against GPU presets — tests the script, validates "
            "nothing.\n" if smoke else "")
    header = (f"# Single-GPU validation: {dev.name}, {time.strftime('%Y-%m-%d %H:%M %Z')}\n\n{note}"
              f"torch {torch.__version__}; predictions = helix.cost.ops.op_time_s (roofline + launch) under "
              f"preset `{dev.preset}` and the measured profile `{profile_path.name}`. Points are CUDA-graph replays "
              f"({timer.graph_failures} fell back to eager), CUDA events, median of 10 after warm-up, operands "
              f"rotated over > 200 MB so each call reads HBM. Wall {time.perf_counter() - t0:.0f} s.")
    csv_path, md_path, png_path = (out / name for name in FILES)
    write_atomic(csv_path, writers.csv_text(list(rows[0]), [list(r.values()) for r in rows]))
    write_atomic(md_path, markdown(rows, cal, labels, header))
    try:
        plot(rows, labels, dev.name, png_path)
    except Exception as exc:  # noqa: BLE001 - the tables matter more than the figure
        print(f"plot skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    for lab in labels:
        print(f"{lab}: {fit.summarize_errors([r[f'err_{lab}'] for r in rows])}")
    return [profile_path, csv_path, md_path, png_path]


if __name__ == "__main__":  # the older spelling, python -m helix.validation.gpu_check: the same command
    from helix.cli import main  # here only: the CLI sits above this module

    raise SystemExit(main(["gpu-check", *sys.argv[1:]]))
