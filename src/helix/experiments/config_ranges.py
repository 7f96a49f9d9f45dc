"""Configuration ranges and memory: which TPA, TPF, KVP, EP values the Helix frontier uses, beside the
expected ranges, and memory per GPU (weights vs KV) along the frontier [paper §2.1, §2.2]."""

from __future__ import annotations

from helix import search
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, fig_path, strategies_for
from helix.report import Section, markdown_table, new_figure, save_figure, write_csv

# The ranges the frontier is expected to use. TPA ≤ K = 8 [paper §2.1.1] and N ≤ 64 GPUs [paper §3.1] are the
# paper's; TPF 1–64, KVP 1–32 and EP 1–8 are not in the paper's text (a third-party summary of the paper
# gives the TPF and KVP ranges). DP and PP are not Helix axes in the paper.
EXPECTED_RANGES = {"tpa": "1–8", "tpf": "1–64", "kvp": "1–32", "ep": "1–8", "dp": "–", "pp": "–",
                   "num_gpus": "≤ 64"}


def run(ctx: Context) -> Section:
    rows, mem_rows = [], []
    fig, ax = new_figure(2, width=5.5)
    for k, name in enumerate((DSR1, LLAMA_PAPER_F)):
        f = search.frontier(ctx.sweep(name, strategies_for(name)).points.of("helix"))
        for axis, expected in EXPECTED_RANGES.items():
            values = sorted(set(getattr(f, axis).tolist()))
            rows.append([name, axis.upper(), expected, ", ".join(str(v) for v in values)])
        x = f.tokens_per_s_per_user
        w, kv = f.weight_bytes_per_gpu / 1e9, f.kv_bytes_per_gpu / 1e9
        ax[k].stackplot(x, w, kv, labels=["weights", "KV cache"], step="post", alpha=0.8)
        ax[k].axhline(ctx.hw.usable_hbm_bytes / 1e9, color="k", ls=":", lw=1, label="usable HBM")
        ax[k].set(xlabel="tokens/s/user (Helix frontier)", ylabel="memory per GPU (GB)", title=name)
        ax[k].legend()
        for i in range(len(f)):
            mem_rows.append([name, f.describe(i), x[i], w[i], kv[i]])
    write_csv(ctx.out / "config_memory_along_frontier.csv",
              ["model", "point", "tokens_per_s_per_user", "weights_gb", "kv_gb"], mem_rows)
    png = save_figure(fig, fig_path(ctx, "config_memory.png"))
    sample = []
    for name in (DSR1, LLAMA_PAPER_F):
        r = [x for x in mem_rows if x[0] == name]
        if r:
            lo, hi = min(r, key=lambda t: t[2]), max(r, key=lambda t: t[2])
            sample += [[name, "highest throughput", *lo[1:]], [name, "lowest TTL", *hi[1:]]]
    return Section(
        key="config", title="Configuration ranges and memory along the Helix frontier",
        measured=("The distinct values of each layout axis on the Helix frontier at 1M context, beside the expected "
                  "ranges, and weights and KV per GPU along the frontier. Of the expected ranges, TPA ≤ K = 8 "
                  "[paper §2.1.1] and N ≤ 64 GPUs [paper §3.1] are the paper's; TPF 1–64, KVP 1–32 and EP 1–8 "
                  "are not stated in its text (a third-party summary of the paper gives TPF and KVP)."),
        figures=[png],
        body=[markdown_table(["model", "axis", "expected range", "values on the Helix frontier"], rows),
              markdown_table(["model", "end", "point", "tokens/s/user", "weights GB/GPU", "KV GB/GPU"], sample,
                             digits=4)],
        differs=(f"Our search also lets Helix use DP in attention and PP (the TRT-LLM layout rules), so the paper's "
                 f"N = KVP × TPA [paper §2.1.1] becomes KVP × TPA × DP per stage. The frontier fills HBM: at the "
                 f"high-throughput end "
                 f"the KV cache takes nearly all of the {ctx.hw.usable_hbm_bytes / 1e9:.0f} GB usable, and weights "
                 "shrink as TPF × EP grows."),
    )
