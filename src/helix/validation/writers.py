"""The validation's one CSV writer, one Markdown-table writer and one predicted-vs-measured figure.

Text is returned, not written: the callers write it with helix.outputs.write_atomic (whole or not at
all) inside their commit.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, never a window), imported on first use: the CLI
    imports every command module at start-up, and pyplot costs ~0.3 s there (as helix.report does)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def csv_text(columns: list[str], rows: list[list]) -> str:
    """CSV of ``rows`` under ``columns``: floats as 6 significant digits, strings as given (quoted only
    where they hold a comma), so every writer's numbers read the same."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def markdown_table(columns: list[str], rows: list[list]) -> list[str]:
    """Lines of a Markdown table; cells are shown as given (callers format their own units)."""
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


def predicted_vs_measured(ax, points: list[tuple[str, float, float, float]], *, xlabel: str, ylabel: str,
                          title: str, palette: dict[str, object] | None = None) -> None:
    """Log-log predicted against measured on ``ax``: (series, measured, predicted, error) per point, the
    error written beside it, the identity line and a ±15 % band, one legend entry per series."""
    series = list(dict.fromkeys(s for s, *_ in points))
    palette = palette or colors(series)
    values = [v for _, m, p, _ in points for v in (m, p)]
    xs = np.geomspace(min(values) * 0.8, max(values) * 1.2, 50)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.85, xs * 1.15, color="0.85", label="±15 %")
    for name in series:
        mine = [(m, p, e) for s, m, p, e in points if s == name]
        ax.scatter([m for m, _, _ in mine], [p for _, p, _ in mine], color=palette[name], s=16, label=name)
        for m, p, e in mine:
            ax.annotate(f"{e:+.0%}", (m, p), fontsize=6, xytext=(3, -3), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7)


def figure(panels: int, width: float = 6.5, height: float = 5.5):
    """A row of ``panels`` axes: the figure and its axes."""
    fig, axes = _pyplot().subplots(1, panels, figsize=(width * panels, height), squeeze=False)
    return fig, list(axes[0])


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def colors(names) -> dict[str, object]:
    """One tab10 colour per name, in order (a figure's panels then agree on each series' colour)."""
    return dict(zip(names, _pyplot().cm.tab10.colors, strict=False))
