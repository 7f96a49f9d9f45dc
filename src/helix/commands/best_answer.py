"""``helix best``'s answer at a budget (best Helix vs best baseline, top K) and ``--emit``: the chosen layout
as each engine takes it (helix.engines), written with helix.outputs (probed before any work, whole or not
at all)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from helix import engines, outputs, search_budget
from helix.errors import HelixInputError
from helix.search import Points

MANIFEST_FILE = "helix-layout.json"


def add_emit_args(p) -> None:
    p.add_argument("--emit", default=None,
                   help="write the chosen layout (most tokens/s/GPU) as engine launch configs: "
                        + ", ".join(engines.ENGINES) + " (comma-separated; needs --out)")
    p.add_argument("--out", default=None, help="folder for --emit's files (replaced whole)")


def check_emit(args) -> tuple[tuple[str, ...], Path] | None:
    """Before any work: --emit names known engines and comes with a writable --out (and --out with --emit)."""
    if args.emit is None and args.out is None:
        return None
    if args.emit is None:
        raise HelixInputError("--out", "writes the engine configs of --emit; give --emit "
                                       + "|".join(engines.ENGINES) + " or drop --out")
    names = tuple(dict.fromkeys(e.strip() for e in args.emit.split(",")))
    bad = [e for e in names if e not in engines.ENGINES]
    if bad or not names:
        raise HelixInputError("--emit", f"unknown engine {bad[0] if bad else args.emit!r}; allowed: "
                                        f"{', '.join(engines.ENGINES)} (comma-separated)")
    if args.out is None:
        raise HelixInputError("--emit", "needs --out DIR, the folder the engine configs are written to")
    out = outputs.check_destination("--out", args.out, replaces=MANIFEST_FILE, command="helix best")
    return names, out


def answer(ok: Points, top: int | None) -> dict:
    """The best Helix layout, the best baseline layout and their ratio within the SLA; the top K layouts."""
    data = {"helix_vs_baseline": search_budget.helix_vs_baseline(ok)}
    if top:
        data["top"] = [{"layout": ok.layout(i).describe(), "layout_fields": search_budget.layout_fields(ok.layout(i)),
                        "batch_size": int(ok.batch[i]), "users": int(ok.users[i]), "num_gpus": int(ok.num_gpus[i]),
                        "ttl_s": float(ok.ttl_s[i]), "tokens_per_s_per_user": float(ok.tokens_per_s_per_user[i]),
                        "tokens_per_s_per_gpu": float(ok.tokens_per_s_per_gpu[i])}
                       for i in search_budget.top_layouts(ok, top)]
    return data


def _line(d: dict) -> str:
    return (f"{d['layout']} B={d['batch_size']} on {d['num_gpus']} GPUs: TTL {d['ttl_s'] * 1e3:.3f} ms, "
            f"{d['tokens_per_s_per_user']:.1f} tok/s/user, {d['tokens_per_s_per_gpu']:.2f} tok/s/GPU")


def format_answer(a: dict) -> str:
    hb = a["helix_vs_baseline"]
    lines = ["== Helix vs the best baseline within the SLA (most tokens/s/GPU on each side)"]
    for side in ("helix", "baseline"):
        lines.append(f"  {side:<9}" + (_line(hb[side]) if hb[side] else "no point within the SLA"))
    if not math.isnan(hb["tokens_per_s_per_gpu_ratio"]):
        lines.append(f"  Helix / baseline: {hb['tokens_per_s_per_gpu_ratio']:.2f}x tokens/s/GPU, "
                     f"{hb['users_ratio']:.2f}x users ({hb['helix']['max_users']} vs {hb['baseline']['max_users']})")
    for k, d in enumerate(a.get("top", []), 1):
        lines.append(("== Top layouts within the SLA\n" if k == 1 else "") + f"  {k:>2}. {_line(d)}")
    return "\n".join(lines)


def _nearest(engine: str, model, feasible: Points, pick: dict):
    """The feasible layout the engine can run on the same GPU count at the same batch with the lowest TTL."""
    same = feasible.take((feasible.num_gpus == pick["num_gpus"]) & (feasible.batch == pick["batch_size"]))
    best = None
    for i in np.argsort(same.ttl_s, kind="stable"):
        if engines.expressible(engine, same.layout(int(i)), model):
            best = int(i)
            break
    return None if best is None else (same.layout(best), float(same.ttl_s[best]))


def unset_assumptions(options: dict) -> list[str]:
    """What the prediction assumes that the emitted parallel sizes do not set (the engine's own switches for
    them differ by version: docs/engines.md), so that a deployment does not run a different plan unawares."""
    said = []
    if options.get("tbo"):
        said.append("two-batch overlap")
    if options.get("redundant_experts"):
        said.append(f"{options['redundant_experts']} redundant experts (EPLB)")
    if options.get("expert_routing", "auto") != "auto":
        said.append(f"{options['expert_routing']} expert routing")
    if options.get("mtp_tokens"):
        said.append(f"MTP, {options['mtp_tokens']} draft token(s) at {options['mtp_acceptance']:g} accepted per step")
    return said


def emit(spec, model, hw, precision, context, feasible: Points, pick: dict, overlap, options) -> dict:
    """Write one file per engine for the chosen layout (or the nearest layout the engine can run) and
    helix-layout.json; returns what was written, per engine."""
    names, out = spec
    ours = pick["_layout"]
    record = {"layout": ours.describe(), "layout_fields": search_budget.layout_fields(ours),
              "batch_size": pick["batch_size"], "num_gpus": pick["num_gpus"], "ttl_ms": pick["ttl_s"] * 1e3,
              "model": model.name, "hardware": hw.name, "context_tokens": context,
              "assumed_not_set": unset_assumptions(options), "engines": {}}
    assumed = ([f"NOT SET HERE: the prediction assumes {', '.join(record['assumed_not_set'])}; set them in the "
                f"engine too"] if record["assumed_not_set"] else [])
    files = {}
    for engine in names:
        name = engines.ENGINE_NAMES[engine]
        note = None
        try:
            settings = engines.engine_settings(engine, ours, model)
            ttl = pick["ttl_s"]
        except engines.InexpressibleError as exc:
            near = _nearest(engine, model, feasible, pick)
            if near is None:
                record["engines"][engine] = {"file": None, "exact": False,
                                             "note": f"{exc}; no layout {name} can run fits batch "
                                                     f"{pick['batch_size']} on {pick['num_gpus']} GPUs"}
                continue
            settings, ttl = engines.engine_settings(engine, near[0], model), near[1]
            note = (f"{name} cannot run {ours.describe()}: {exc}. Emitted the nearest layout it can run, "
                    f"{near[0].describe()}: predicted TTL {ttl * 1e3:.3f} ms vs {pick['ttl_s'] * 1e3:.3f} ms for ours "
                    f"(batch {pick['batch_size']}, {pick['num_gpus']} GPUs)")
        header = [f"helix best: {model.name} on {pick['num_gpus']} x {hw.name}, context {context:,} tokens, "
                  f"batch {pick['batch_size']}",
                  f"layout {settings.layout.describe()}: predicted TTL {ttl * 1e3:.3f} ms",
                  *([f"NOTE: {note}"] if note else []), *assumed, "keys: docs/engines.md"]
        files[engines.FILES[engine]] = engines.render(settings, model.name, header)
        record["engines"][engine] = {"file": engines.FILES[engine], "exact": note is None, "note": note,
                                     "layout": settings.layout.describe(),
                                     "layout_fields": search_budget.layout_fields(settings.layout),
                                     "ttl_ms": ttl * 1e3, "sizes": settings.sizes, "world_size": settings.world_size}
    with outputs.output_dir(out, "helix best") as tmp:
        for fname, text in files.items():
            outputs.write_atomic(tmp / fname, text)
            if fname.endswith(".sh"):
                (tmp / fname).chmod(0o755)
        outputs.write_atomic(tmp / MANIFEST_FILE, json.dumps(record, indent=2) + "\n")
    record["out"] = str(out)
    return record


def format_emitted(rec: dict) -> str:
    lines = [f"== Engine configs for {rec['layout']} (batch {rec['batch_size']}, {rec['num_gpus']} GPUs) "
             f"in {rec['out']}/"]
    for engine, e in rec["engines"].items():
        name = engines.ENGINE_NAMES[engine]
        if e["file"] is None:
            lines.append(f"  {name:<13} not written: {e['note']}")
            continue
        sizes = ", ".join(f"{k}={v}" for k, v in e["sizes"].items() if not isinstance(v, dict))
        lines.append(f"  {name:<13} {e['file']}: {sizes}")
        if e["note"]:
            lines.append(f"  {'':<13} NOTE: {e['note']}")
    if rec.get("assumed_not_set"):
        lines.append(f"  NOT SET in the files: the prediction assumes {', '.join(rec['assumed_not_set'])}")
    return "\n".join(lines)
