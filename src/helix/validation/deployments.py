"""Public end-to-end decode measurements of real deployments, and the simulator's figure for each.

The development set the fidelity work is judged on while it is built (a further held-out set judges
the result). Each point is run with the configuration the CLI expresses (its `helix simulate` command
is printed) on the calibrated presets; nothing is fitted to these points. ``predict`` runs one point;
``rows`` compares them all, with every term of the step.

Operating points: where a measurement gives tokens/s/GPU at a per-user speed (DeepSeek's production
report), the batch is the one at which the simulator gives that per-user speed; where it gives TPOT at
a batch, the batch is the measured one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from helix.layout import Layout
from helix.specs import load_hardware, load_model
from helix.specs.precision import PrecisionSpec
from helix.step import simulate

# DeepSeek-V3/R1 as DeepSeek and SGLang deploy it: FP8 block-scaled weights and GEMMs, BF16 MLA and
# KV cache, FP8 dispatch (with 1x128 scales, as MXFP8's 8.25 bits), BF16 combine, BF16 router and LM head.
DEEPSEEK_FP8 = PrecisionSpec(attention_weights="fp8_block", ffn_weights="fp8_block", kv_cache="bf16",
                             communication="bf16", compute="fp8", attention_compute="bf16", moe_dispatch="mxfp8",
                             moe_combine="bf16", router_weights="bf16", embedding_weights="bf16")


@dataclass(frozen=True)
class Deployment:
    id: str
    what: str
    source: str
    model: str
    hardware: str
    engine: str
    layout: Layout
    context_tokens: int
    precision: PrecisionSpec
    measured: float  # the published figure, in ``metric``'s unit
    metric: str  # "tpot_ms" (at ``batch``) or "tokens_per_s_per_gpu" (at ``tokens_per_s_per_user``)
    batch: int = 0
    tokens_per_s_per_user: float = 0.0
    options: dict = field(default_factory=dict)  # simulate's keywords: redundant_experts, tbo, mtp_tokens, ...

    def command(self, batch: int) -> str:
        lay = self.layout
        flags = [f"--model {self.model}", f"--hardware {self.hardware}", f"--engine {self.engine}",
                 f"--context {self.context_tokens}", f"--batch {batch}", f"--strategy {lay.strategy}",
                 f"--gpus {lay.gpus_per_stage}", f"--ep {lay.ep}"]
        flags += [f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in self.options.items() if v]
        flags += [f"--{c.replace('_', '-')}-precision {getattr(self.precision, c)}" for c in PRECISION_FLAGS]
        return "helix simulate " + " ".join(flags)


PRECISION_FLAGS = ("attention_weights", "ffn_weights", "kv_cache", "communication", "compute", "attention_compute",
                   "moe_dispatch", "moe_combine", "router_weights", "embedding_weights")


def _inferencemax(seqs_per_gpu: float, tpot_ms: float) -> Deployment:
    return Deployment(
        f"sglang-h200-dp8-ep8-{seqs_per_gpu:g}", f"SGLang, 8 x H200, DP-attention 8 + EP 8, {seqs_per_gpu:g} seq/GPU",
        "InferenceMAX (SemiAnalysis), DeepSeek-R1 FP8 1K/1K, SGLang disaggregated decode, median TPOT",
        "deepseek-r1", "h200", "sglang", Layout.dp_ep(8), 1536, DEEPSEEK_FP8, tpot_ms, "tpot_ms",
        batch=int(round(seqs_per_gpu * 8)))


# The residual skew EPLB leaves in that deployment, as the same blog measures it (its EPLB case study:
# decode at 256 sequences per GPU, balancedness = mean / max tokens per GPU per decode step, 0.878 on
# average over steps 13-89 read from the figure, while throughput averages 2,790 tokens/s/GPU): the
# hottest rank holds 1 / 0.878 = 1.14 x the mean (--expert-imbalance).
H100_EP72_SKEW = "EPLB's residual skew as the blog's EPLB case study measures it (balancedness 0.878: 1.14)"
H100_EP72 = {"redundant_experts": 32, "expert_imbalance": 1.14}

DEVELOPMENT = (
    Deployment("ds-prod", "DeepSeek production decode, H800, EP 144 / DP-attention 144, 18 nodes",
               "DeepSeek open-infra-index day 6 (2025-03-01): 14.8k output tokens/s per H800 node at 20-22 "
               "tokens/s/user, average KV 4,989 tokens; 24-hour average of live traffic, MTP use unstated",
               "deepseek-r1", "h800", "sglang", Layout(dp=144, ep=144, strategy="dp_ep"), 4989, DEEPSEEK_FP8,
               1850.0, "tokens_per_s_per_gpu", tokens_per_s_per_user=21.0,
               options={"redundant_experts": 32, "tbo": True}),
    Deployment("sglang-h100-ep72", "SGLang, 72 H100 (9 nodes), DP-attention 72 + EP 72, 256 seq/GPU",
               "LMSYS blog 2025-05-05 (large-scale EP): 2,785 output tokens/s/GPU at 256 sequences per GPU, "
               "KV ~2,000 tokens, two-batch overlap, 32 redundant experts (about 92 ms per step); "
               + H100_EP72_SKEW, "deepseek-r1", "h100", "sglang", Layout(dp=72, ep=72, strategy="dp_ep"), 2000,
               DEEPSEEK_FP8, 256 * 1e3 / 2785.0, "tpot_ms", batch=256 * 72, options=H100_EP72 | {"tbo": True}),
    Deployment("sglang-h100-ep72-no-tbo", "The same, two-batch overlap off (the blog's TBO ablation)",
               "LMSYS blog 2025-05-05, TBO ablation: two-batch overlap speeds decode up 25.5 % at 256 sequences "
               "per GPU, to 22,310 tokens/s per node, so 17,777 without it (about 115 ms per step); "
               + H100_EP72_SKEW, "deepseek-r1", "h100", "sglang", Layout(dp=72, ep=72, strategy="dp_ep"), 2000,
               DEEPSEEK_FP8, 256 * 8 * 1.255e3 / 22310.0, "tpot_ms", batch=256 * 72, options=H100_EP72),
    Deployment("deepseek-profile", "DeepSeek's decode profile, H800, EP 128 / DP-attention 128, 128 req/GPU, MTP",
               "deepseek-ai/profile-data decode trace: EP 128, 4K prompt, 128 requests per GPU in two "
               "micro-batches, 'an absolutely balanced MoE routing'; 96 ms per step end to end (61 layers 87.32 ms) "
               "as zdszero.github.io reads its decode.json; one MTP draft token (DeepSeek's attention carries "
               "MTP's, LMSYS blog 2025-05-05), acceptance 1.8 (DeepSeek-V3 report 5.4.3; TTL does not depend on it)",
               "deepseek-r1", "h800", "sglang", Layout(dp=128, ep=128, strategy="dp_ep"), 4096, DEEPSEEK_FP8,
               96.0, "tpot_ms", batch=128 * 128,
               options={"expert_routing": "balanced", "tbo": True, "mtp_tokens": 1, "mtp_acceptance": 1.8}),
    _inferencemax(2.5, 27.5), _inferencemax(4.9, 31.9), _inferencemax(9.4, 35.2), _inferencemax(15.8, 38.0),
    _inferencemax(20.4, 39.0),
)


def predict(d: Deployment, batch: int, engine: str | None = None):
    """``engine``: override the point's engine (``"none"``: the previous, uncalibrated model)."""
    model, hw = load_model(d.model), load_hardware(d.hardware, engine=engine or d.engine)
    return simulate(model, hw, d.layout, batch, d.context_tokens, d.precision, **d.options)


def operating_batch(d: Deployment, engine: str | None = None) -> int:
    """The measured batch, or the largest batch at which the simulator still gives the measured
    tokens/s/user (a bisection over batch: TTL grows with batch)."""
    if d.metric == "tpot_ms":
        return d.batch
    lo, hi = d.layout.dp, d.layout.dp * 4096
    while hi - lo > d.layout.dp:
        mid = (lo + hi) // 2
        if float(predict(d, mid, engine).tokens_per_s_per_user) >= d.tokens_per_s_per_user:
            lo = mid
        else:
            hi = mid
    return lo


def row(d: Deployment, engine: str | None = None) -> dict:
    batch = operating_batch(d, engine)
    r = predict(d, batch, engine)
    value = float(r.ttl_s) * 1e3 if d.metric == "tpot_ms" else float(r.tokens_per_s_per_gpu)
    return {"id": d.id, "what": d.what, "source": d.source, "metric": d.metric, "measured": d.measured,
            "predicted": value, "error": value / d.measured - 1.0, "batch": batch,
            "tokens_per_s_per_user": float(r.tokens_per_s_per_user), "ttl_ms": float(r.ttl_s) * 1e3,
            "feasible": bool(r.feasible), "command": d.command(batch),
            "breakdown_ms": {k: float(v) * 1e3 for k, v in r.breakdown.items() if float(v) > 0}}


def rows(points=DEVELOPMENT, engine: str | None = None) -> list[dict]:
    return [row(d, engine) for d in points]


def summary(table: list[dict]) -> dict:
    errors = np.array([abs(r["error"]) for r in table])
    return {"median_abs_error": float(np.median(errors)), "max_abs_error": float(errors.max()),
            "too_fast": int(sum(r["error"] < 0 if r["metric"] == "tpot_ms" else r["error"] > 0 for r in table))}


def markdown(table: list[dict]) -> str:
    """The development table and, per point, every term of its step (ms), as docs/validation.md shows them."""
    lines = ["| point | measured | predicted | error | batch | tok/s/user | command |", "|---|---|---|---|---|---|---|"]
    for r in table:
        unit = "ms TPOT" if r["metric"] == "tpot_ms" else "tok/s/GPU"
        lines.append(f"| {r['id']} | {r['measured']:.4g} {unit} | {r['predicted']:.4g} | {100 * r['error']:+.1f} % | "
                     f"{r['batch']:,} | {r['tokens_per_s_per_user']:.1f} | `{r['command']}` |")
    terms = sorted({t for r in table for t in r["breakdown_ms"]}, key=lambda t: -max(r["breakdown_ms"].get(t, 0)
                                                                                    for r in table))
    lines += ["", "| term (ms/step) | " + " | ".join(r["id"] for r in table) + " |",
              "|---|" + "---|" * len(table)]
    for t in terms:
        lines.append(f"| {t} | " + " | ".join(f"{r['breakdown_ms'].get(t, 0.0):.3f}" for r in table) + " |")
    lines.append("| TTL | " + " | ".join(f"{r['ttl_ms']:.3f}" for r in table) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m helix.validation.deployments [--json] [--previous-model]
    import json
    import sys

    engine = "none" if "--previous-model" in sys.argv[1:] else None
    table = rows(engine=engine)
    print(json.dumps({"rows": table, "summary": summary(table)}, indent=1) if "--json" in sys.argv[1:]
          else markdown(table) + f"\n\n{summary(table)}")
