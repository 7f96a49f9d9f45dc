"""Precision: the frontiers and headline claims under FP4, NVFP4, MXFP4, FP8 and BF16 per tensor class, which
class matters most for Helix at 1M, and what the numerics say (no paper figure: the paper assumes FP4 for
every tensor [paper §3.1] and has no precision sweep).

Simulator only (numpy): every variant is a full sweep of DeepSeek-R1 and Llama-405B (F = 65,536) at 1M on the
global preset, the claims computed as helix.search defines them. One class at a time moves from the paper's
FP4-everywhere baseline to NVFP4 (4.5 bits: E4M3 scale per 16), MXFP4 (4.25 bits: E8M0 scale per 32), FP8 or
BF16 (bytes: helix.cost.formats); "every class" rows move all of them, the GEMM and attention math with them.

The numerical side is measured by ``helix precision`` (torch, the runtime's own attention and LSE combine);
``helix reproduce`` does not import torch, so this section reads that command's committed table
(``precision_numerics.csv``, written by NUMERICS_COMMAND) and states its headline.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from helix import search
from helix.experiments.claim_fields import ratio_at_multiples
from helix.experiments.common import DSR1, LLAMA_PAPER_F, WORDING, Context, fig_path, strategies_for
from helix.report import Section, markdown_table, new_figure, save_figure, write_csv
from helix.specs.precision import PrecisionSpec

FORMATS = ("fp4", "nvfp4", "mxfp4", "fp8", "bf16")
CLASSES = ("attention_weights", "ffn_weights", "kv_cache", "communication")
# "communication" is every payload: the Helix / TP collectives and the DP+EP baseline's dispatch and combine,
# so the baseline's exchange moves with Helix's
CLASS_FIELDS = {"attention_weights": ("attention_weights",), "ffn_weights": ("ffn_weights",),
                "kv_cache": ("kv_cache",), "communication": ("communication", "moe_dispatch", "moe_combine")}
MODELS = ((DSR1, "DeepSeek-R1"), (LLAMA_PAPER_F, "Llama-405B"))
BUDGET_MULTIPLE = 1.25  # the less knife-edged reading of the budget claims (helix.experiments.claim_fields)
NUMERICS_CSV = Path(__file__).with_name("precision_numerics.csv")
NUMERICS_COMMAND = "helix precision --out DIR (4K, 64K, 1M tokens; KVP 1-64; 3 seeds; every format)"
# Public accuracy of FP4 / FP8 checkpoints (model cards; the KV cache stays in the serving stack's format there).
ACCURACY = (
    ("DeepSeek-R1, NVIDIA FP4 (NVFP4 weights and activations of the linear layers, TensorRT Model Optimizer) vs "
     "FP8: MMLU 90.7 vs 90.8, GSM8K 96.1 vs 96.3, AIME 2024 80.0 vs 80.0, GPQA Diamond 69.2 vs 69.7, MATH-500 "
     "94.2 vs 95.4", "https://huggingface.co/nvidia/DeepSeek-R1-FP4"),
    ("Llama-3.1-405B-Instruct, NVIDIA FP8 and FP4 checkpoints: 'Only the weights and activations of the linear "
     "operators within transformers blocks are quantized' (no KV cache or communication format)",
     "https://huggingface.co/nvidia/Llama-3.1-405B-Instruct-FP4"),
    ("Llama-3.1-405B-Instruct, INT4 weights (GPTQ, w4a16): OpenLLM v1 average 86.01 vs 86.63 unquantised",
     "https://huggingface.co/neuralmagic/Meta-Llama-3.1-405B-Instruct-quantized.w4a16"),
)


def variants() -> list[tuple[str, str, PrecisionSpec]]:
    """(class, format, precision): every class at each format, then one class at a time from FP4."""
    out = [("every class", f, PrecisionSpec.uniform(f)) for f in FORMATS]
    out += [(c, f, replace(PrecisionSpec(), **dict.fromkeys(CLASS_FIELDS[c], f))) for c in CLASSES
            for f in FORMATS[1:]]
    return out


def metrics(ctx: Context, name: str, precision: PrecisionSpec, fronts: bool = False) -> dict:
    """Helix's frontier ends and the headline claims of one sweep (the nominal one is the cached sweep);
    ``fronts`` adds the Helix and baseline frontiers (for the figure)."""
    nominal = precision == ctx.precision
    pts = ctx.sweep(name, strategies_for(name), precision=precision, cache=nominal).points
    feas = pts.take(pts.feasible)
    h, base = feas.of("helix"), feas.of(*WORDING[name].budget_baseline)
    union = search.helix_vs_baseline(pts)
    worded = union if WORDING[name].budget_baseline == search.BASELINE_STRATEGIES else \
        search.helix_vs_baseline(pts, baseline=WORDING[name].budget_baseline)
    at = {v: ratio_at_multiples(h, base, v, (BUDGET_MULTIPLE,))[f"{BUDGET_MULTIPLE:g}"]
          for v in ("users", "tokens_per_s_per_gpu")} if len(h) and len(base) else {}
    return {"helix_min_ttl_ms": float(h.ttl_s.min()) * 1e3 if len(h) else np.nan,
            "helix_max_tokens_per_s_per_gpu": float(h.tokens_per_s_per_gpu.max()) if len(h) else np.nan,
            "baseline_min_ttl_ms": float(base.ttl_s.min()) * 1e3 if len(base) else np.nan,
            "ttl_ratio_equal_batch": union.equal_batch.max_ratio,
            "max_interactivity_ratio": union.max_interactivity_ratio,
            "users_ratio": worded.batch.max_ratio, "users_ratio_at_budget": at.get("users", np.nan),
            "tokens_per_s_per_gpu_ratio": worded.throughput.max_ratio,
            "tokens_per_s_per_gpu_ratio_at_budget": at.get("tokens_per_s_per_gpu", np.nan),
            "_fronts": search.frontiers(pts, ("helix", *WORDING[name].budget_baseline)) if fronts else {}}


FIELDS = ("helix_min_ttl_ms", "helix_max_tokens_per_s_per_gpu", "baseline_min_ttl_ms", "ttl_ratio_equal_batch",
          "max_interactivity_ratio", "users_ratio", "users_ratio_at_budget", "tokens_per_s_per_gpu_ratio",
          "tokens_per_s_per_gpu_ratio_at_budget")
HEADERS = ("class", "format", "Helix lowest TTL ms", "Helix max tokens/s/GPU", "baseline lowest TTL ms",
           "TTL ratio at equal batch", "max tokens/s/user ratio", "users ratio (max)",
           f"users ratio at {BUDGET_MULTIPLE:g} × budget", "tokens/s/GPU ratio (max)",
           f"tokens/s/GPU ratio at {BUDGET_MULTIPLE:g} × budget")


def class_effect(results: list[tuple[str, str, dict]]) -> list[list]:
    """Per class: Helix's lowest TTL and max tokens/s/GPU with that class alone in BF16 and FP8, relative to
    FP4 everywhere (the paper's setting)."""
    base = next(m for c, f, m in results if c == "every class" and f == "fp4")
    rows = []
    for c in CLASSES:
        row = [c]
        for f in ("fp8", "bf16"):
            m = next(m for cc, ff, m in results if cc == c and ff == f)
            row += [m["helix_min_ttl_ms"] / base["helix_min_ttl_ms"],
                    m["helix_max_tokens_per_s_per_gpu"] / base["helix_max_tokens_per_s_per_gpu"]]
        rows.append(row)
    return rows


def most_important(effect_rows: list[list], fmt: str) -> tuple[str, str]:
    """(the class whose ``fmt`` ("fp8" or "bf16") raises Helix's lowest TTL most, the one that cuts its max
    tokens/s/GPU most), from class_effect's rows."""
    col = 1 if fmt == "fp8" else 3
    return max(effect_rows, key=lambda r: r[col])[0], min(effect_rows, key=lambda r: r[col + 1])[0]


def frontier_figure(ctx: Context, per_model: dict[str, list]) -> str:
    """Helix (solid) and its worded baseline (dashed) frontiers per model, one colour per every-class format."""
    fig, axes = new_figure(len(MODELS), width=5.6, height=4.4)
    colours = dict(zip(FORMATS, ("#1f77b4", "#2ca02c", "#17becf", "#ff7f0e", "#d62728"), strict=True))
    for ax, (name, label) in zip(axes, MODELS, strict=True):
        for c, f, m in per_model[name]:
            if c != "every class":
                continue
            for side, ls in (("helix", "-"), ("baseline", "--")):
                fr = m["_fronts"].get(side)
                if fr is not None and len(fr):
                    ax.step(fr.tokens_per_s_per_user, fr.tokens_per_s_per_gpu, where="post", ls=ls,
                            color=colours[f], lw=1.3, label=f"{f} {'Helix' if side == 'helix' else 'baseline'}")
        ax.set(xscale="log", yscale="log", xlabel="tokens/s/user", ylabel="tokens/s/GPU",
               title=f"{label}, 1M, every class in one format")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, fig_path(ctx, "precision_frontiers.png"))


def numerics_rows(path: Path = NUMERICS_CSV) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def numerics_headline(rows: list[dict]) -> tuple[str, str]:
    """(a table of the longest context's errors per KV format at KVP 1 and the largest KVP, payload bf16 and
    fp32; one sentence on what the payload adds)."""
    top = max(int(r["context"]) for r in rows)
    kvps = sorted({int(r["kvp"]) for r in rows})
    at = {(r["kv_format"], int(r["kvp"]), r["payload_format"]): r for r in rows if int(r["context"]) == top}
    kv_formats = list(dict.fromkeys(r["kv_format"] for r in rows))
    table = markdown_table(
        ["KV cache", f"KVP {kvps[0]}", f"KVP {kvps[-1]}, bf16 payload", f"KVP {kvps[-1]}, fp8_row payload",
         f"KVP {kvps[-1]}, nvfp4 payload", "worst head (any KVP, payload)"],
        [[f, float(at[f, kvps[0], "fp32"]["rel_l2_mean"]), *[float(at[f, kvps[-1], p]["rel_l2_mean"])
                                                             if (f, kvps[-1], p) in at else None
                                                             for p in ("bf16", "fp8_row", "nvfp4")],
          max(float(r["rel_l2_worst"]) for k, r in at.items() if k[0] == f)] for f in kv_formats], digits=3)
    exact = {p: float(at["fp32", kvps[-1], p]["rel_l2_mean"]) for p in ("fp32", "bf16", "fp8_row", "nvfp4")
             if ("fp32", kvps[-1], p) in at}
    sentence = (f"At {top:,} tokens with an unquantised cache, KVP {kvps[-1]}'s combine adds "
                + ", ".join(f"{v:.2g} ({p} payload)" for p, v in exact.items())
                + " relative L2 error: the exact LSE merge itself is fp32 round-off, a BF16 payload adds about "
                "its own rounding (2^-9), and an FP8 or FP4 payload adds as much as an FP8 or FP4 cache does.")
    return table, sentence


def run(ctx: Context) -> Section:
    per_model, rows = {}, []
    for name, _ in MODELS:
        per_model[name] = [(c, f, metrics(ctx, name, p, fronts=c == "every class")) for c, f, p in variants()]
        rows += [[name, c, f, *[m[k] for k in FIELDS]] for c, f, m in per_model[name]]
    write_csv(ctx.out / "precision_variants.csv", ["model", "class", "format", *FIELDS], rows)
    body = []
    for name, label in MODELS:
        res = per_model[name]
        effect = class_effect(res)
        lead = {f: most_important(effect, f) for f in ("fp8", "bf16")}
        body += [f"**{label}** (budget ratios against {', '.join(WORDING[name].budget_baseline)}):",
                 markdown_table(list(HEADERS), [[c, f, *[m[k] for k in FIELDS]] for c, f, m in res], digits=3),
                 f"{label}: one class at a time from FP4 everywhere, Helix's lowest TTL and max tokens/s/GPU "
                 "relative to FP4 everywhere (× FP4):",
                 markdown_table(["class", "FP8: lowest TTL", "FP8: max tokens/s/GPU", "BF16: lowest TTL",
                                 "BF16: max tokens/s/GPU"], effect, digits=3),
                 f"{label}, Helix at 1M: in BF16, **{lead['bf16'][0]}** raises the lowest TTL most and "
                 f"**{lead['bf16'][1]}** cuts the best tokens/s/GPU most; in FP8, **{lead['fp8'][0]}** and "
                 f"**{lead['fp8'][1]}**. A lowest TTL below FP4's is the measured kernels' doing: at the few tokens "
                 "of the lowest-TTL point the BF16 GEMM tables run faster than the NVFP4 ones (whose rows include "
                 "the activations' quantisation)."]
    table, sentence = numerics_headline(numerics_rows())
    body += ["**Numerics** (`" + NUMERICS_COMMAND + "`; relative L2 error of the attention output of one "
             "16-head query group, head_dim 128, against a float64 unsplit reference, mean over seeds and heads; "
             "keys Student-t(4) with 4 of 128 channels × 20): ", table, sentence,
             "**Model-level accuracy** needs real weights and real activations (which this machine cannot fetch): "
             "the study above bounds the attention error on synthetic heavy-tailed data only. Public results "
             "for FP4 / FP8 checkpoints of these models:",
             "\n".join(f"- {text} [{url}]" for text, url in ACCURACY)]
    return Section(
        key="precision", title="Precision per tensor class (no paper figure)",
        measured=("Full sweeps of DeepSeek-R1 and Llama-405B (F = 65,536) at 1M on the global preset with every "
                  "class in FP4, NVFP4, MXFP4, FP8 or BF16, and with one class at a time (attention weights, FFN / "
                  "expert weights, KV cache, communication payload) moved from the paper's FP4 everywhere; the "
                  "claims as helix.search defines them (TTL ratio at equal batch against the union of baselines, "
                  "budget ratios against the baseline each model's claims are worded against)."),
        figures=[frontier_figure(ctx, per_model)], body=body,
        points_evaluated={},
        differs=("The paper assumes FP4 everywhere and shows no precision sweep; its setup cites the MX "
                 "formats [paper §3.1], i.e. MXFP4 (4.25 bits), while its App. A counts 0.5 B (our fp4). NVFP4 "
                 "and MXFP4 differ from that FP4 only by their block scales' bytes (4.5 and 4.25 bits per element "
                 "against 4), and every FP4 format runs the same measured kernels here (no NVFP4-vs-MXFP4 "
                 "kernel rates are modelled). Accuracy is not simulated: the numerics are a synthetic bound, "
                 "not a benchmark."),
    )
