"""``helix best``'s answer at a budget: best Helix vs best baseline and their ratio, and the top K layouts."""

from __future__ import annotations

import math

from helix import search_budget
from helix.search import Points


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
