"""Report: Markdown, CSV, figures (matplotlib, Agg) and summary.json; formatting only, no cost arithmetic.

An experiment returns a ``Section`` (what it measured, tables, figures, claims, notes); ``write_report``
renders every section into ``report.md`` and writes ``summary.json``:
``{"claims": [{"id", "section", "paper", "ours", "unit", "note"}], "points_evaluated": {model: n}, "wall_s"}``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helix.cost.memory import REASONS
from helix.report_html import write_html
from helix.search import LAYOUT_FIELDS, ORDER_FIELDS, Points


def _pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (it costs ~0.3 s at CLI start-up)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # House style: every figure readable at a glance, no text under 9 pt (idempotent, so cheap on each call).
    matplotlib.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
                                "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11})
    return plt

# The claim ids of summary.json, in report order, with the paper's figure [paper §3.2, §3.3, Abstract].
PAPER_CLAIMS = {
    "dsr1.max_interactivity_ratio": ("Abstract, Fig. 5", 1.5, "x"),
    "dsr1.max_batch_ratio": ("§3.2, Fig. 5", 32.0, "x"),
    "dsr1.throughput_ratio": ("§3.2, Fig. 5", 32.0, "x"),
    "llama405b.max_interactivity_ratio": ("§3.2, Fig. 6", 1.13, "x"),
    "llama405b.throughput_ratio": ("§3.2, Fig. 6", 4.0, "x"),
    "llama405b.max_batch_ratio": ("§3.2, Fig. 6", 4.0, "x"),
    "dsr1.hopb_off_interactivity_loss": ("§3.3, Fig. 7", 0.01, "fraction"),
    "llama405b.hopb_off_interactivity_loss": ("§3.3, Fig. 7", 0.12, "fraction"),
    "dsr1.hopb_off_interactivity_loss_per_request": ("§3.3, Fig. 7", 0.01, "fraction"),
    "llama405b.hopb_off_interactivity_loss_per_request": ("§3.3, Fig. 7", 0.12, "fraction"),
}
TOLERANCE = 0.20  # a claim "matches" within 20 % of the paper's figure (issue 3 target)

STRATEGY_STYLE = {
    "tp": ("TP", "#1f77b4"),
    "tp_pp": ("TP+PP", "#17becf"),
    "dp_ep": ("DP+EP", "#2ca02c"),
    "medha": ("Medha", "#9467bd"),
    "helix": ("Helix", "#d62728"),
    "baseline": ("best baseline", "#444444"),
}


@dataclass
class Claim:
    id: str
    ours: float
    note: str = ""
    extra: dict = field(default_factory=dict)  # further summary.json fields (at_budget_multiple, baseline_point, ...)

    def as_dict(self) -> dict:
        section, paper, unit = PAPER_CLAIMS[self.id]
        ours = None if not np.isfinite(self.ours) else round(float(self.ours), 4)
        return {"id": self.id, "section": section, "paper": paper, "ours": ours, "unit": unit, "note": self.note,
                **self.extra}


@dataclass
class Section:
    """One experiment's contribution to the report."""

    key: str  # e.g. "dsr1"
    title: str  # e.g. "DeepSeek-R1, 1M context (paper Fig. 5)"
    measured: str  # what is measured, one paragraph
    body: list[str] = field(default_factory=list)  # Markdown blocks (tables, paragraphs), in order
    figures: list[str] = field(default_factory=list)  # PNG file names relative to the report
    claims: list[Claim] = field(default_factory=list)
    differs: str = ""  # paper vs ours, and why they differ
    points_evaluated: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- tables and CSV


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    v = float(v)
    if not np.isfinite(v):
        return "–"
    if abs(v) < 1e-9:  # float round-off (e.g. 1 - x/x = 3.3e-16) is zero, not a figure worth printing
        return "0"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits}g}"
    return f"{v:,.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}g}"


def markdown_table(headers: list[str], rows: list[list], digits: int = 3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


POINT_COLUMNS = ("strategy", *LAYOUT_FIELDS, *ORDER_FIELDS, "batch", "users", "num_gpus", "ttl_ms",
                 "tokens_per_s_per_user", "tokens_per_s_per_gpu", "memory_per_gpu_gb", "weights_per_gpu_gb",
                 "kv_per_gpu_gb", "feasible", "infeasible_reason")


def point_rows(p: Points) -> list[list]:
    cols = [p.strategy.tolist(), *(getattr(p, f).tolist() for f in LAYOUT_FIELDS + ORDER_FIELDS), p.batch.tolist(),
            p.users.tolist(), p.num_gpus.tolist(), np.round(p.ttl_s * 1e3, 6).tolist(),
            np.round(p.tokens_per_s_per_user, 5).tolist(), np.round(p.tokens_per_s_per_gpu, 5).tolist(),
            np.round(p.memory_per_gpu_bytes / 1e9, 4).tolist(), np.round(p.weight_bytes_per_gpu / 1e9, 4).tolist(),
            np.round(p.kv_bytes_per_gpu / 1e9, 4).tolist(), p.feasible.astype(int).tolist(),
            [REASONS[c] for c in p.reason_code.tolist()]]
    return [list(r) for r in zip(*cols, strict=True)]


def write_csv(path: Path, headers, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(headers)
        w.writerows(rows)


def write_points_csv(path: Path, p: Points, label: str | None = None) -> None:
    """Points as CSV; ``label`` adds a leading ``frontier`` column (per-strategy / baseline / global)."""
    rows = point_rows(p)
    headers = list(POINT_COLUMNS)
    if label is not None:
        headers = ["frontier", *headers]
        rows = [[label, *r] for r in rows]
    write_csv(path, headers, rows)


def write_frontiers_csv(path: Path, fronts: dict[str, Points]) -> None:
    rows, headers = [], ["frontier", *POINT_COLUMNS]
    for name, p in fronts.items():
        rows += [[name, *r] for r in point_rows(p)]
    write_csv(path, headers, rows)


# ---------------------------------------------------------------- figures


def new_figure(ncols: int = 1, width: float = 6.0, height: float = 4.2):
    """(figure, axes row); a single Axes when ncols == 1."""
    fig, axes = _pyplot().subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, (axes[0][0] if ncols == 1 else axes[0])


def _plain_log_ticks(fig) -> None:
    """Log-axis tick labels as plain numbers ("20", not matplotlib's "2×10¹") within 1e-3..1e4; which ticks
    get a label stays the default formatter's choice, only the text changes."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            text = super().__call__(x, pos)
            return f"{x:g}" if text and 1e-3 <= abs(x) < 1e4 else text

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            # only matplotlib's default log formatters: labels a figure set itself (set_xticks) stay
            if type(axis.get_major_formatter()) is LogFormatterSciNotation:
                axis.set_major_formatter(Plain())
            if type(axis.get_minor_formatter()) is LogFormatterSciNotation:
                axis.set_minor_formatter(Plain(labelOnlyBase=False))


def save_figure(fig, path: Path) -> str:
    _plain_log_ticks(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path.name


def step_envelope(curves: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Upper envelope of step curves drawn ``where="post"``: (x, y, owner per x) on the union of their x.

    Each curve holds y[i] on [x[i], x[i+1]) up to its last x; on [b_k, b_k+1) the envelope is the highest curve
    spanning it, so it never dips below one (the Pareto set of the union, drawn step-wise, can: a point it drops
    still holds its y up to that curve's next point). NaN where no curve spans an interval (the line breaks).
    """
    curves = {k: (np.asarray(x, float), np.asarray(y, float)) for k, (x, y) in curves.items() if len(x)}
    if not curves:
        return np.array([]), np.array([]), []
    b = np.unique(np.concatenate([x for x, _ in curves.values()]))
    nxt = np.append(b[1:], b[-1])  # each interval's right end; the last breakpoint is the final vertical drop
    vals = np.full((len(curves), len(b)), -np.inf)
    for row, (x, y) in enumerate(curves.values()):
        i = np.searchsorted(x, b, side="right") - 1
        spans = (i >= 0) & (nxt <= x[-1])
        vals[row, spans] = y[i[spans]]
    top = vals.argmax(axis=0)
    env = vals[top, np.arange(len(b))]
    names = list(curves)
    owners = [names[t] if np.isfinite(e) else "" for t, e in zip(top, env, strict=True)]
    return b, np.where(np.isfinite(env), env, np.nan), owners


def plot_frontiers(ax, fronts: dict[str, Points], norm_x: float = 1.0, norm_y: float = 1.0,
                   strategies=None, label_global: bool = True, suffix: str = "", linestyle: str = "-") -> None:
    """Tokens/s/GPU against tokens/s/user, one step curve per strategy, under them the global frontier.

    The global frontier is drawn as the upper envelope of the strategy curves (``step_envelope``), with
    the owners named once in the legend rather than annotated per segment (labels overprinted each other).
    """
    names = [s for s in (strategies or [k for k in fronts if k not in ("baseline", "global")])
             if fronts.get(s) is not None and len(fronts[s])]
    curves = {s: (fronts[s].tokens_per_s_per_user / norm_x, fronts[s].tokens_per_s_per_gpu / norm_y) for s in names}
    for s, (x, y) in curves.items():
        label, color = STRATEGY_STYLE.get(s, (s, None))
        ax.step(x, y, where="post", color=color, linestyle=linestyle, marker=".", markersize=3, linewidth=1.4,
                label=label + suffix)
    if label_global and "global" in fronts and curves:
        x, y, owners = step_envelope(curves)
        span: dict[str, float] = {}  # the tokens/s/user range each strategy owns, to order the legend's owners
        for w, o in zip(np.diff(x), owners[:-1], strict=True):
            span[o] = span.get(o, 0.0) + float(w)
        ranked = sorted((o for o in span if o), key=span.get, reverse=True)
        owned_by = ", ".join(STRATEGY_STYLE.get(o, (o,))[0] for o in ranked)
        ax.step(x, y, where="post", color="black", alpha=0.15, linewidth=6, zorder=0,
                label="global frontier" + (f"\n({owned_by})" if owned_by else ""))
    ax.set_xlabel("tokens/s/user" + (" (÷ best baseline)" if norm_x != 1.0 else ""))
    ax.set_ylabel("tokens/s/GPU" + (" (÷ best baseline)" if norm_y != 1.0 else ""))
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    frontier_legend(ax)


def frontier_legend(ax) -> None:
    """Legend outside the axes, right: inside, every corner of a frontier plot holds some strategy's curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


# ---------------------------------------------------------------- the report


def claim_table(claims: list[Claim]) -> str:
    rows = []
    for c in claims:
        d = c.as_dict()
        ours = d["ours"]
        within = None if ours is None else abs(ours - d["paper"]) <= TOLERANCE * d["paper"]
        rows.append([d["id"], d["section"], d["paper"], ours, d["unit"], within, d["note"]])
    return markdown_table(["claim", "paper §", "paper", "ours", "unit", "within 20 %", "note"], rows, digits=3)


def render_markdown(sections: list[Section], header: str, preamble: list[str]) -> str:
    claims = [c for s in sections for c in s.claims]
    out = [f"# {header}", "", *preamble, "", "## Claims: paper vs ours", "", claim_table(claims), ""]
    out += ["## Contents", ""] + [f"- [{s.title}](#{s.key})" for s in sections] + [""]
    for s in sections:
        out += [f'<a id="{s.key}"></a>', f"## {s.title}", "", f"**Measured.** {s.measured}", ""]
        for fig in s.figures:
            out += [f"![{fig}]({fig})", ""]
        for block in s.body:
            out += [block, ""]
        if s.claims:
            out += [claim_table(s.claims), ""]
        if s.differs:
            out += [f"**Paper vs ours.** {s.differs}", ""]
    return "\n".join(out)


def summary(sections: list[Section], wall_s: float) -> dict:
    claims = {c.id: c for s in sections for c in s.claims}
    missing = [k for k in PAPER_CLAIMS if k not in claims]
    if missing:
        raise ValueError(f"claims missing from the experiments: {missing}")
    points: dict[str, int] = {}
    for s in sections:
        for m, n in s.points_evaluated.items():
            points[m] = max(points.get(m, 0), n)
    return {"claims": [claims[k].as_dict() for k in PAPER_CLAIMS], "points_evaluated": points,
            "wall_s": round(wall_s, 2)}


def write_report(out: Path, sections: list[Section], header: str, preamble: list[str], wall_s: float) -> dict:
    data = summary(sections, wall_s)
    (out / "report.md").write_text(render_markdown(sections, header, preamble))
    write_html(out, (out / "report.md").read_text(), header)  # report.html beside it, figures inlined
    (out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data
