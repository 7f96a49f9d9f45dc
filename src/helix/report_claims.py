"""The README's claim table, rendered from summary.json (``helix reproduce`` writes it as claims_table.md).

One row per claim: the paper's figure, ours computed as the paper words it, the same claim at 1.25 x
the baseline's lowest TTL (budget claims: the maximum over budgets sits where the baseline first
becomes feasible), and the other reading beside it.
"""

from __future__ import annotations

LABELS = {
    "dsr1.max_interactivity_ratio": "DeepSeek-R1 TTL at equal batch, best baseline ÷ Helix",
    "dsr1.max_batch_ratio": "DeepSeek-R1 users within a TTL budget, Helix ÷ best baseline",
    "dsr1.throughput_ratio": "DeepSeek-R1 tokens/s/GPU within a TTL budget, Helix ÷ best baseline",
    "llama405b.max_interactivity_ratio": "Llama-405B max tokens/s/user, Helix ÷ best baseline (F = 65,536)",
    "llama405b.throughput_ratio": "Llama-405B tokens/s/GPU within a TTL budget, Helix ÷ TP",
    "llama405b.max_batch_ratio": "Llama-405B users within a TTL budget, Helix ÷ TP",
    "dsr1.hopb_off_interactivity_loss": "HOP-B off (one batched exchange per layer): tokens/s/user lost, DeepSeek-R1",
    "llama405b.hopb_off_interactivity_loss": "HOP-B off (one batched exchange per layer): lost, Llama-405B",
    "dsr1.hopb_off_interactivity_loss_per_request": "HOP-B off (one exchange per request, Fig. 3): lost, "
                                                    "DeepSeek-R1",
    "llama405b.hopb_off_interactivity_loss_per_request": "HOP-B off (one exchange per request, Fig. 3): lost, "
                                                         "Llama-405B",
}
TIGHT_MULTIPLE = "1.25"


def _value(v, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "fraction":
        return "0" if abs(v) < 1e-9 else f"{100 * v:.3g} %"
    return f"{v:.3g}×"


def _other(c: dict) -> str:
    if "max_tokens_per_s_per_user_ratio" in c:
        if c["worded_as"].startswith("TTL"):
            return f"max tokens/s/user ratio {_value(c['max_tokens_per_s_per_user_ratio'], 'x')}"
        return f"TTL at equal batch {_value(c['at_equal_batch'], 'x')}"
    if "vs_baseline_union" in c:
        return f"vs best of all baselines {_value(c['vs_baseline_union'], 'x')}"
    if "vs_tp" in c:
        return f"vs TP alone {_value(c['vs_tp'], 'x')}"
    if "per_request_collective_s" in c:
        return f"each request's all-to-all {c['per_request_collective_s'] * 1e6:.3g} µs"
    return ""


def claims_table(summary: dict) -> str:
    """Markdown table of every claim of a summary.json object."""
    lines = ["| claim | paper | ours, as the paper words it | at 1.25 × the baseline's lowest TTL | beside it |",
             "|---|---|---|---|---|"]
    for c in summary["claims"]:
        tight = (c.get("at_budget_multiple") or {}).get(TIGHT_MULTIPLE)
        lines.append(f"| {LABELS.get(c['id'], c['id'])} | {_value(c['paper'], c['unit'])} | "
                     f"{_value(c['ours'], c['unit'])} | {_value(tight, c['unit']) if tight is not None else '–'} | "
                     f"{_other(c)} |")
    return "\n".join(lines)
