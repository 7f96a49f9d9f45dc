"""A hardware profile from ``helix calibrate``'s measurements: one builder per group of fields.

Every measured field is ``{value, source, empirical: true}``; the source says what was timed and how.
The main profile serves runs with a rank on every core (rates of the slowest rank while every rank
runs); ``single_rank_profile`` is the same with the rates of a rank alone. Pure: no torch, no timing.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path

import yaml

from helix.validation import fit, launches
from helix.validation.measurement import MIB, Measurement, attention_rate, pool_rounds

# The profile's fields in the order they are written.
FIELDS = ("name", "description", "peak_flops_per_s_fp4", "peak_flops_per_s_fp8", "peak_flops_per_s_bf16",
          "hbm_capacity_bytes", "hbm_bytes_per_s", "scale_up_domain_gpus", "link_bytes_per_s_per_direction",
          "scale_out_bytes_per_s_per_direction", "hbm_usable_fraction", "hbm_efficiency", "flop_efficiency",
          "link_efficiency", "kernel_launch_s", "sync_latency_s", "ring_base_latency_s", "ring_hop_latency_s",
          "nvls_latency_s", "scale_out_latency_s", "step_overhead_s", "comm_overlap_efficiency",
          "all_reduce_algorithms")


def _num(v: float) -> float:
    return float(f"{v:.4g}")


def _entry(value, source: str, empirical: bool = True) -> dict:
    return {"value": _num(value), "source": source, "empirical": empirical}


def _by_what(measurements: list[Measurement]) -> dict[str, list[Measurement]]:
    by: dict[str, list[Measurement]] = {}
    for m in measurements:
        by.setdefault(m.what, []).append(m)
    return by


def _first(by: dict, what: str) -> list[Measurement]:
    if what not in by:
        raise ValueError(f"calibration is missing {what!r} measurements")
    return by[what]


def _physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


# ---------------------------------------------------------------- one builder per group of fields


def compute_fields(by: dict) -> dict:
    """The FLOP rates: the runtime computes in fp32, which the simulator maps to its bf16 slot."""
    mm = _first(by, "matmul")
    peak32 = max(m.rate for m in mm if m.dtype == "fp32")
    classes = "; ".join(f"{m.dtype} {m.size}: {m.rate / 1e9:.1f} GFLOP/s" for m in mm)
    bf16 = [m for m in mm if m.dtype == "bf16"]
    return {
        "peak_flops_per_s_fp4": _entry(0.0, "no FP4 units: 0 = fall back to the bf16 slot", False),
        "peak_flops_per_s_fp8": _entry(0.0, "no FP8 units: 0 = fall back to the bf16 slot", False),
        "peak_flops_per_s_bf16": _entry(peak32, "MEASURED fp32 matmul rate (the runtime computes in fp32, which "
                                        f"maps to this slot), best size class, one thread; all classes: {classes}"
                                        + ("" if bf16 else "; bf16 not measured")),
        "flop_efficiency": _entry(1.0, "the peak slot already holds the measured rate"),
    }


def attention_note(rows: list[Measurement], rate: float, bw: float, how: str) -> str:
    sizes = ", ".join(f"{m.n_bytes / MIB:.0f} MiB of K+V {m.median_s * 1e3:.2f} ms" for m in rows)
    return (f"the runtime's GQA decode attention (helix.runtime.attention.local_attention, fp32, B=4 K=4 g=2 "
            f"Hsz=64, one thread, {how}; {sizes}): {rate / 1e9:.2f} GB/s (slope of time vs bytes) / the "
            f"profile's memory bandwidth {bw / 1e9:.2f} GB/s")


def memory_fields(by: dict, cores: int) -> dict:
    """Bandwidth (the slowest of every rank streaming at once: a step waits for it), the attention's share
    of it (every rank at once), capacity per rank."""
    alone = _first(by, "stream_read")
    stream = max(m.rate for m in alone)
    concurrent = [m for m in by.get("stream_read_all_ranks", []) if m.group_size == cores]
    bw = min([stream] + [m.rate for m in concurrent])
    bw_note = f"fp32 tensor.sum() over {', '.join(m.size for m in alone)}, one thread: {stream / 1e9:.2f} GB/s alone"
    if concurrent:
        bw_note += (f", {concurrent[0].rate / 1e9:.2f} GB/s for the slowest of {cores} ranks streaming at once (used: "
                    "a step waits for its slowest rank)")
    gemv_note = ", ".join(f"B={m.size.split('x')[0]}: {m.rate / 1e9:.1f} GB/s" for m in _first(by, "gemv"))
    attn_rows = [m for m in by.get("decode_attention_all_ranks", []) if m.group_size == cores]
    how = f"the slowest of {cores} ranks running it at once" if attn_rows else "alone"
    attn_rows = attn_rows or _first(by, "decode_attention")
    rate = attention_rate(attn_rows)
    return {
        "hbm_capacity_bytes": _entry(_physical_memory_bytes() / cores, f"physical memory / {cores} cores (one rank "
                                     "per core)", False),
        "hbm_bytes_per_s": _entry(bw, bw_note),
        "hbm_usable_fraction": _entry(0.8, "ASSUMPTION: 20 % of a core's memory share left to the OS, Python, torch"),
        "hbm_efficiency": _entry(min(1.0, rate / bw), attention_note(attn_rows, rate, bw, how)
                                 + f". Decode GEMV x[B,4096] @ W[4096,8192] for comparison: {gemv_note}"),
    }


def runtime_fixed_costs(measurements: list[Measurement], ranks: int, add_s: float):
    """(kernel_launch_s, step_overhead_s, their two source strings) from the runtime probe run by
    ``ranks`` ranks at once (1: alone), or None if it was not measured.

    step(L layers) = intercept + L x per_layer at B = 1 and an 8-token context, where every op is
    fixed cost: per_layer / the launches helix.step charges per dense layer (helix.validation.launches)
    is the fixed cost of one modelled op; the intercept less the launches charged once per step
    (embedding + LM head) is the per-step overhead.
    """
    what = "runtime_step" if ranks == 1 else "runtime_step_all_ranks"
    rows = [m for m in measurements if m.what == what and m.group_size == ranks]
    probes = sorted((int(m.size.split()[0]), m.median_s) for m in rows)
    if len({n for n, _ in probes}) < 2:
        return None
    (l0, t0), (l1, t1) = probes[0], probes[-1]
    per_layer = max((t1 - t0) / (l1 - l0), 0.0)
    per_layer_launches = launches.per_dense_layer(launches.PROBE_MODEL, ranks)  # KVP = ranks
    per_step_launches = launches.per_step(launches.PROBE_MODEL, ranks)
    launch = per_layer / per_layer_launches
    intercept = t0 - l0 * per_layer
    step_overhead = max(intercept - per_step_launches * launch, 0.0)
    who = ("one rank alone" if ranks == 1 else
           f"Helix KVP={ranks} on {ranks} ranks at once, time inside collectives taken out")
    probe_note = (f"decode steps of a minimal Llama (helix.runtime.llama, H=64, B=1, 8-token context, "
                  f"one thread per rank, {who}), median of {rows[0].samples}: "
                  + ", ".join(f"{n} layers {t * 1e3:.3f} ms" for n, t in probes))
    launch_note = (f"runtime fixed cost per modelled op: {per_layer * 1e3:.3f} ms per layer (slope) / "
                   f"{per_layer_launches} launches helix.step charges per dense layer; {probe_note}; "
                   f"a bare 1-element torch.add costs {add_s * 1e6:.2f} us")
    overhead_note = (f"per-step intercept {intercept * 1e3:.3f} ms less the {per_step_launches} "
                     f"embedding + LM-head launches; {probe_note}")
    return launch, step_overhead, launch_note, overhead_note


def fixed_cost_fields(measurements: list[Measurement], by: dict, cores: int) -> dict:
    """The fixed cost of a modelled op and of a step: the runtime probe with every rank at once (the main
    profile serves runs with a rank on every core), else alone, else a bare torch.add."""
    add_s = _first(by, "launch")[0].median_s
    costs = runtime_fixed_costs(measurements, cores, add_s) or runtime_fixed_costs(measurements, 1, add_s)
    launch, overhead, launch_note, overhead_note = costs or (
        add_s, 0.0, "median per-call time of a 1-element torch.add (eager op overhead), one thread",
        "not measured (no runtime decode probe): 0")
    return {"kernel_launch_s": _entry(launch, launch_note), "step_overhead_s": _entry(overhead, overhead_note)}


def collective_fields(measurements: list[Measurement], by: dict, cores: int) -> tuple[dict, fit.LinearFit | None]:
    """The link and its latencies: one joint fit of every measured collective (helix.validation.fit) to
    the forms helix.cost.collectives prices them with; gloo runs the all-reduce as a ring only."""
    coll = [m for m in measurements if m.what in fit.KINDS]
    coll_fit = None
    if coll:
        coll_fit = fit.fit_collectives([m.what for m in coll], [m.n_bytes for m in coll],
                                       [m.group_size for m in coll], [m.median_s for m in coll])
        c = coll_fit.coefficients
        link_bw = 1.0 / c["s_per_byte"] if c["s_per_byte"] > 0 else 1e12
        sizes = sorted({m.n_bytes for m in coll})
        ps = sorted({m.group_size for m in coll})
        wait = ", ".join(f"{m.median_s * 1e3:.2f} ms at p={m.group_size}" for m in by.get("collective_wait", []))
        how = (f"gloo {', '.join(sorted({m.what for m in coll}))}, {sizes[0]:g}-{sizes[-1]:g} B, group sizes "
               f"{ps}; each call after ~1 ms of compute on one of 3 process groups in turn (as in a decode "
               f"step), timed from the last rank's arrival to the last exit (earlier ranks waited "
               f"{wait or '(not recorded)'} on average: compute imbalance, not the collective), mean of "
               f"{coll[0].samples} calls; joint relative least squares to helix.cost.collectives forms "
               f"(median |residual| {coll_fit.median_abs_error:.1%}, worst {coll_fit.max_abs_error:.1%})")
        sync, ring_base, ring_hop = c["sync_latency_s"], c["ring_base_latency_s"], c["ring_hop_latency_s"]
    else:
        link_bw, sync, ring_base, ring_hop, how = 1e12, 0.0, 0.0, 0.0, "not measured (single rank)"
    fields = {
        "scale_up_domain_gpus": _entry(max(cores, 1), "ranks on one host share one transport (cores)", False),
        "link_bytes_per_s_per_direction": _entry(link_bw, "1 / fitted s-per-byte: " + how),
        "scale_out_bytes_per_s_per_direction": _entry(link_bw, "single host: no scale-out tier (= link)", False),
        "link_efficiency": _entry(1.0, "the link bandwidth already holds the fitted achieved rate"),
        "sync_latency_s": _entry(sync, "fitted alpha of the all-to-all (direct form): " + how),
        "ring_base_latency_s": _entry(ring_base, "fitted ring fixed part (all-reduce, all-gather): " + how),
        "ring_hop_latency_s": _entry(ring_hop, "fitted ring per-step latency (all-reduce 2(p-1) steps, all-gather "
                                     "p-1): " + how),
        "nvls_latency_s": _entry(0.0, "no in-switch reduction on CPU (0 = not available)", False),
        "scale_out_latency_s": _entry(0.0, "single host: no scale-out tier", False),
        "all_reduce_algorithms": {"value": ["ring"], "source": "gloo (torch.distributed CPU backend) implements "
                                  "all_reduce as a ring only: no one-/two-shot through peer memory, no NVLS"},
    }
    return fields, coll_fit


def _ms(by: dict, what: str, like: Measurement) -> str:
    """The median of the ``what`` row beside ``like`` (same size and group), in ms."""
    rows = [m for m in by.get(what, []) if m.size == like.size and m.group_size == like.group_size]
    return f"{rows[0].median_s * 1e3:.3f} ms" if rows else "?"


def overlap_fields(by: dict, cores: int) -> dict:
    """The compute-communication overlap efficiency, measured on gloo ranks (the run with every core first)."""
    ov = sorted(by.get("comm_overlap", []), key=lambda m: (m.group_size != cores, m.group_size))
    if not ov:
        return {"comm_overlap_efficiency": _entry(1.0, "not measured (no collectives): the paper's perfect overlap "
                                                  "[ASSUMPTION]", False)}
    per_size = [m for m in by.get("overlap_both", []) if m.group_size == ov[0].group_size]
    detail = "; ".join(f"{m.size}: a2a {_ms(by, 'overlap_all_to_all', m)} + attention "
                       f"{_ms(by, 'overlap_attention', m)} alone, {m.median_s * 1e3:.3f} ms together, eta "
                       f"{m.rate:.2f}" for m in per_size) or "per-size rows not recorded"
    return {"comm_overlap_efficiency": _entry(ov[0].rate, (
        f"gloo all_to_all_single(async_op=True) and a decode-attention einsum (fp32, sized to take about as long), "
        f"{ov[0].group_size} ranks, one thread each, timed alone and issued together (all-to-all, attention, "
        f"wait), each after a barrier; eta = (t_a2a + t_attn - t_both) / min(t_a2a, t_attn) on the means over "
        f"ranks, clipped to [0, 1], median of {ov[0].samples} repetitions over the sizes ({detail})"))}


# ---------------------------------------------------------------- the profiles


def build_profile(measurements: list[Measurement], *, name: str, cores: int) -> tuple[dict, fit.LinearFit | None]:
    """The hardware mapping (every field, value + source + empirical) from measurements (rounds pooled),
    and the collectives' fit (None without collectives)."""
    measurements = pool_rounds(measurements)
    by = _by_what(measurements)
    coll, coll_fit = collective_fields(measurements, by, cores)
    host = f"{platform.machine()} {platform.processor() or ''}".strip()
    fields = {"name": name,
              "description": f"Measured by helix calibrate on {socket.gethostname()} ({host}), one rank = one core "
                             f"({cores} cores), {time.strftime('%Y-%m-%d')}",
              **compute_fields(by), **memory_fields(by, cores), **fixed_cost_fields(measurements, by, cores),
              **coll, **overlap_fields(by, cores)}
    return {k: fields[k] for k in FIELDS}, coll_fit


def single_rank_profile(profile: dict, measurements: list[Measurement]) -> dict | None:
    """The profile for a rank alone on the machine: ranks on one CPU share its memory bandwidth (and
    caches), so a lone rank streams faster than each of N ranks at once (the main profile's rate) and
    its runtime probe runs alone. None if the concurrent rate was not measured (then the main
    profile already holds the lone rates)."""
    measurements = pool_rounds(measurements)
    alone = [m for m in measurements if m.what == "stream_read"]
    if not alone or not any(m.what == "stream_read_all_ranks" for m in measurements):
        return None
    stream = max(m.rate for m in alone)
    out = dict(profile)
    out["name"] = f"{profile['name']}-single-rank"
    out["description"] = profile["description"] + "; the rate of one rank streaming alone"
    out["hbm_bytes_per_s"] = _entry(stream, f"fp32 tensor.sum() over {', '.join(m.size for m in alone)}, one thread, "
                                    f"no other rank streaming: {stream / 1e9:.2f} GB/s (for one-rank runs)")
    attn = [m for m in measurements if m.what == "decode_attention"]
    if attn:
        rate = attention_rate(attn)
        out["hbm_efficiency"] = _entry(min(1.0, rate / stream), attention_note(attn, rate, stream, "alone"))
    launch = [m for m in measurements if m.what == "launch"]
    costs = runtime_fixed_costs(measurements, 1, launch[0].median_s if launch else 0.0)
    if costs:
        out["kernel_launch_s"] = _entry(costs[0], costs[2])
        out["step_overhead_s"] = _entry(costs[1], costs[3])
    return out


def single_rank_path(profile_path: Path) -> Path:
    """Where the one-rank variant of a profile lives: ``<stem>.single-rank.yaml`` beside it."""
    return profile_path.with_name(profile_path.stem + ".single-rank" + profile_path.suffix)


def profile_yaml(profile: dict) -> str:
    header = "# Written by `helix calibrate`; every measured number says how it was measured.\n"
    return header + yaml.safe_dump(profile, sort_keys=False, width=200)
