"""``helix precision``: the attention output error of the Helix KVP combine when the KV cache and the exchanged
partial outputs are stored in low precision, measured with the runtime's own attention and LSE combine.

Flags are checked without torch (``helix.runtime.precision_spec``); the measurement
(``helix.runtime.precision_error``) imports torch, so it is imported in the handler only and ``helix --help``
works without torch. ``--quick`` changes only the defaults (4K and 64K tokens, KVP 1, 2, 8, 64, one seed):
a flag given explicitly wins.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from helix import outputs
from helix.errors import HelixInputError
from helix.flags import integer
from helix.runtime.precision_spec import KV_FORMATS, PAYLOAD_FORMATS, Study
from helix.specs.tokens import parse_tokens

QUICK = {"contexts": "4K,64K", "kvp": "1,2,8,64", "seeds": 1}
FULL = {"contexts": "4K,64K,1M", "kvp": "1,2,4,8,16,32,64", "seeds": 3}
SUMMARY_FIELDS = ("context", "kv_format", "kvp", "payload_format", "seeds", "rel_l2_mean", "rel_l2_worst",
                  "max_abs_error")
PLOT_PAYLOAD = "bf16"  # TensorRT-LLM's partial-output payload (half precision, fp32 LSE)


def _items(flag: str, text: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise HelixInputError(flag, f"a comma-separated list with no empty item, got {text!r}")
    if len(set(items)) != len(items):
        raise HelixInputError(flag, f"lists an item twice: {text!r}")
    return items


def _kvps(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in _items("--kvp", text))
    except ValueError:
        raise HelixInputError("--kvp", f"comma-separated integers like 1,2,8,64, got {text!r}") from None


def study_from_args(args) -> Study:
    """The study the flags ask for; each bad flag is one HelixInputError naming it."""
    defaults = QUICK if args.quick else FULL
    contexts = tuple(parse_tokens(t, "--contexts") for t in _items("--contexts", args.contexts or defaults["contexts"]))
    seeds = defaults["seeds"] if args.seeds is None else args.seeds
    if not 1 <= seeds <= 100:
        raise HelixInputError("--seeds", f"the number of seeds, 1 to 100, got {seeds}")
    fields = {"--contexts": contexts, "--kvp": _kvps(args.kvp or defaults["kvp"]),
              "--kv-formats": tuple(_items("--kv-formats", args.kv_formats)),
              "--payload-formats": tuple(_items("--payload-formats", args.payload_formats))}
    names = dict(zip(("contexts", "kvps", "kv_formats", "payload_formats"), fields.values(), strict=True))
    try:
        return Study(**names, seeds=tuple(range(seeds)))
    except HelixInputError as exc:  # name the flag, not the dataclass field
        flag = {"contexts": "--contexts", "kvps": "--kvp", "kv_formats": "--kv-formats",
                "payload_formats": "--payload-formats"}.get(exc.field, exc.field)
        raise HelixInputError(flag, str(exc).split(": ", 1)[1]) from None


def table(summary: list[dict], kvps: tuple[int, ...]) -> str:
    """Mean relative L2 error per KVP, one line per context × KV format × payload format; the worst head
    over every KVP and seed and the largest |error| close each line."""
    lines = [f"{'context':>10} {'KV cache':<11}{'payload':<9}" + "".join(f"{'KVP ' + str(k):>10}" for k in kvps)
             + f"{'worst':>10}{'max |err|':>11}"]
    rows: dict[tuple, dict[int, dict]] = {}
    for r in summary:
        rows.setdefault((r["context"], r["kv_format"], r["payload_format"]), {})[r["kvp"]] = r
    for (context, fmt, pf), by_kvp in rows.items():
        worst = max(r["rel_l2_worst"] for r in by_kvp.values())
        max_abs = max(r["max_abs_error"] for r in by_kvp.values())
        lines.append(f"{context:>10,} {fmt:<11}{pf:<9}" + "".join(f"{by_kvp[k]['rel_l2_mean']:>10.2e}" for k in kvps)
                     + f"{worst:>10.2e}{max_abs:>11.2e}")
    return "\n".join(lines)


def plot(path: Path, summary: list[dict], study: Study) -> None:
    """Relative L2 error vs context, one panel per KV format, a line per KVP (payload bf16 where measured)."""
    from helix.report import new_figure, save_figure

    pf = PLOT_PAYLOAD if PLOT_PAYLOAD in study.payload_formats else study.payload_formats[0]
    fig, axes = new_figure(len(study.kv_formats), width=3.6, height=3.4)
    axes = [axes] if len(study.kv_formats) == 1 else list(axes)
    errs = [max(r["rel_l2_mean"], 1e-9) for r in summary if r["payload_format"] == pf]
    for ax, fmt in zip(axes, study.kv_formats, strict=True):
        ax.set_ylim(min(errs) / 2, max(errs) * 2)  # one scale for every panel: the formats compare at a glance
        for kvp in study.kvps:
            pts = sorted((r["context"], r["rel_l2_mean"]) for r in summary
                         if r["kv_format"] == fmt and r["kvp"] == kvp and r["payload_format"] == pf)
            ax.plot([p[0] for p in pts], [max(p[1], 1e-9) for p in pts], marker="o", label=f"KVP {kvp}")
        ax.set(xscale="log", yscale="log", xlabel="context (tokens)", title=f"KV {fmt}, payload {pf}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("relative L2 error of the attention output")
    axes[0].legend(fontsize=7)
    save_figure(fig, path)


def write(out: Path, study: Study, rows: list[dict], summary: list[dict], wall_s: float) -> None:
    from helix.report import write_csv
    from helix.runtime.precision_error import ROW_FIELDS

    with outputs.output_dir(out, "helix precision") as tmp:  # the previous result stays until this one is whole
        write_csv(tmp / "precision.csv", SUMMARY_FIELDS, [[r[f] for f in SUMMARY_FIELDS] for r in summary])
        write_csv(tmp / "precision_seeds.csv", ROW_FIELDS, [[r[f] for f in ROW_FIELDS] for r in rows])
        meta = {"contexts": list(study.contexts), "kvps": list(study.kvps), "kv_formats": list(study.kv_formats),
                "payload_formats": list(study.payload_formats), "seeds": list(study.seeds),
                "data": {f: getattr(study.data, f) for f in study.data.__slots__}, "wall_s": round(wall_s, 2),
                "reference": "float64 attention, no quantisation, no split", "summary": summary}
        (tmp / "precision.json").write_text(json.dumps(meta, indent=1) + "\n")
        plot(tmp / "precision.png", summary, study)


def run_precision(args) -> int:
    study = study_from_args(args)
    out = None if args.out is None else outputs.check_destination("--out", args.out, replaces="precision.csv",
                                                                   command="helix precision")
    try:
        from helix.runtime import precision_error  # torch: imported here, not when ``helix`` starts
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise HelixInputError("torch", "not installed; helix precision needs it: pip install -e \".[runtime]\"") \
            from None
    log = (lambda *a: None) if args.quiet else (
        lambda context, seed: print(f"  {context:,} tokens, seed {seed}: done", file=sys.stderr))
    t0 = time.perf_counter()
    rows = precision_error.run(study, progress=log)
    summary = precision_error.summarise(rows)
    wall = time.perf_counter() - t0
    print(f"Relative L2 error of the attention output (mean over {len(study.seeds)} seed(s) × "
          f"{study.data.query_heads} query heads) vs a float64 unsplit reference; LSE in fp32; {wall:.1f} s")
    print(table(summary, study.kvps))
    if out is not None:
        write(out, study, rows, summary, wall)
        print(f"wrote {out / 'precision.csv'}, {out / 'precision_seeds.csv'}, {out / 'precision.json'}, "
              f"{out / 'precision.png'}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("precision", help="measure the Helix combine's attention error under low-precision KV / "
                                         "payloads (needs torch)",
                       description=__doc__.split("\n\n")[0],
                       epilog="example: helix precision --quick --out precision/")
    p.add_argument("--contexts", default=None, help=f"context lengths (default {FULL['contexts']}; "
                                                    f"--quick {QUICK['contexts']})")
    p.add_argument("--kvp", default=None, help=f"KVP widths, each dividing the largest (default {FULL['kvp']}; "
                                               f"--quick {QUICK['kvp']})")
    p.add_argument("--kv-formats", default=",".join(KV_FORMATS), help="KV cache formats (default: all, %(default)s)")
    p.add_argument("--payload-formats", default=",".join(PAYLOAD_FORMATS),
                   help="partial-output payload formats, LSE in fp32 (default: all, %(default)s)")
    p.add_argument("--seeds", type=integer, default=None, help=f"number of seeds (default {FULL['seeds']}; "
                                                               f"--quick {QUICK['seeds']})")
    p.add_argument("--quick", action="store_true", help="small defaults (4K, 64K; KVP 1, 2, 8, 64; one seed)")
    p.add_argument("--out", default=None, help="write precision.csv, precision_seeds.csv, precision.json, "
                                               "precision.png to this folder")
    p.add_argument("--quiet", action="store_true", help="no per-context progress on stderr")
    p.set_defaults(func=run_precision)
