"""Tables, shape checks and the figure of a validation run (helix.validation.validate's results).

Files: validation.csv (every point, every term predicted and measured), terms.csv (per term),
validation.md (by layout, per point, per term, aten ops per phase, shape checks) and
validation.png (predicted vs measured with each point's error; step time vs context), through the
validation's one CSV, Markdown-table and figure writers (helix.validation.writers). Pure: no torch. Each
file is written whole or not at all.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from helix.outputs import write_atomic
from helix.validation import fit, writers
from helix.validation.compare import OTHER, TERM_PHASES, Row, ValidationResult

# ---------------------------------------------------------------- shape checks


def shape_checks(rows: list[Row]) -> list[dict]:
    """Linearity in S, all-to-all independent of S, HOP-B gain: measured beside predicted."""
    checks = []
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.point.label, r.point.batch), []).append(r)
    for (label, b), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.point.context)
        if len(rs) < 3:
            continue
        s = np.array([r.point.context for r in rs], dtype=float)
        meas, pred = np.array([r.measured_s for r in rs]), np.array([r.predicted_s for r in rs])
        lm, lp = fit.fit_line(s, meas, relative=True), fit.fit_line(s, pred, relative=True)
        checks.append({"check": "linear in context", "where": f"{label}, B={b}",
                       "measured": f"slope {lm.coefficients['beta'] * 1e9:.1f} ns/token, worst residual "
                                   f"{lm.max_abs_error:.1%}",
                       "predicted": f"slope {lp.coefficients['beta'] * 1e9:.1f} ns/token",
                       "ok": lm.max_abs_error < 0.1})
        # Whether the exchange's cost depends on S: the trend of log(call time) against log(S) fitted
        # through every call of the series (gloo on few cores is bimodal, 10-50 % of calls take ~4 ms
        # more, so a max/min of three medians reads that mixture as a trend); it passes when the fitted
        # trend changes the call time by less than 1.5x across the contexts. Medians and p90s per S are
        # shown beside it; the mean, with the tail, is in the per-term tables and in the step.
        if not rs[0].point.hopb and all(r.calls_s.get("kvp_all_to_all") for r in rs):
            per_call = [np.asarray(r.calls_s["kvp_all_to_all"], dtype=float) for r in rs]
            x = np.concatenate([np.full(c.size, np.log(r.point.context)) for r, c in zip(rs, per_call, strict=True)])
            y = np.log(np.maximum(np.concatenate(per_call), 1e-9))
            elasticity = float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0
            change = float(np.exp(elasticity * (np.log(s[-1]) - np.log(s[0]))))
            predicted_per_call = rs[0].terms["kvp_all_to_all"][0] * rs[0].samples / per_call[0].size
            checks.append({"check": "all-to-all independent of context", "where": f"{label}, B={b}",
                           "measured": "per call " + "  ".join(
                               f"S={int(x)}: {np.median(c) * 1e3:.2f} ms (p90 {np.percentile(c, 90) * 1e3:.1f})"
                               for x, c in zip(s, per_call, strict=True))
                           + f"; fitted trend {change:.2f}x from S={int(s[0])} to {int(s[-1])}",
                           "predicted": f"{predicted_per_call * 1e3:.2f} ms per call at every S",
                           "ok": max(change, 1.0 / change) < 1.5})
    by_key = {(r.point.kvp, r.point.tpa, r.point.hopb, r.point.batch, r.point.context): r for r in rows}
    for (kvp, tpa, hopb, b, s), on in sorted(by_key.items()):
        off = by_key.get((kvp, tpa, False, b, s))
        if not hopb or off is None:
            continue
        gm = (off.measured_s - on.measured_s) / off.measured_s
        gp = (off.predicted_s - on.predicted_s) / off.predicted_s
        where = f"KVP={kvp} B={b} S={s}"
        # Presence: a gain (> 1 %) where the model predicts one, none where it predicts none.
        checks.append({"check": "HOP-B gain where predicted", "where": where, "measured": f"{gm:+.1%}",
                       "predicted": f"{gp:+.1%}", "ok": (gm > 0.01) == (gp > 0.01)})
        checks.append({"check": "HOP-B gain within 10 points", "where": where, "measured": f"{gm:+.1%}",
                       "predicted": f"{gp:+.1%}", "ok": abs(gm - gp) < 0.1})
    return checks


# ---------------------------------------------------------------- outputs


def term_summary(rows: list[Row]) -> list[dict]:
    """Per simulator term: median predicted and measured ms and the error over the points."""
    out = []
    names = sorted({t for r in rows for t in r.terms}, key=lambda t: list(TERM_PHASES).index(t)
                   if t in TERM_PHASES else 99)
    for t in names:
        pairs = [r.terms[t] for r in rows if t in r.terms and r.terms[t][1] > 0]
        if not pairs:
            continue
        pr, me = np.array(pairs).T
        e = fit.summarize_errors(fit.relative_errors(pr, me))
        out.append({"term": t, "points": len(pairs), "pred_ms": float(np.median(pr)) * 1e3,
                    "meas_ms": float(np.median(me)) * 1e3, "share": float(np.median(me / [
                        r.measured_s for r in rows if t in r.terms and r.terms[t][1] > 0])),
                    **{f"err_{k}": v for k, v in e.items() if k != "points"}})
    return out


POINT_COLUMNS = ["layout", "kvp", "tpa", "hopb", "batch", "context", "measured_ms", "predicted_ms", "error", "spread",
                 "measured_mean_ms", "predicted_ring_ar_ms", "error_ring_ar", "rank_wait_ms"]
TERM_COLUMNS = ["term", "points", "pred_ms", "meas_ms", "share", "err_median_abs", "err_max_abs", "err_median"]


def points_csv(rows: list[Row]) -> str:
    """validation.csv: every point, the step and every term predicted and measured (ms)."""
    terms = sorted({t for r in rows for t in r.terms})
    out = []
    for r in rows:
        p = r.point
        vals = [p.label, p.kvp, p.tpa, int(p.hopb), p.batch, p.context, f"{r.measured_s * 1e3:.4f}",
                f"{r.predicted_s * 1e3:.4f}", f"{r.error:.4f}", f"{r.spread:.3f}", f"{r.measured_mean_s * 1e3:.4f}",
                f"{r.predicted_ring_ar_s * 1e3:.4f}", f"{r.ring_ar_error:.4f}", f"{r.wait_s * 1e3:.4f}"]
        for t in terms:
            pr, me = r.terms.get(t, (0.0, 0.0))
            vals += [f"{pr * 1e3:.4f}", f"{me * 1e3:.4f}"]
        out.append(vals)
    return writers.csv_text(POINT_COLUMNS + [f"{t}_{w}_ms" for t in terms for w in ("pred", "meas")], out)


def terms_csv(rows: list[Row]) -> str:
    """terms.csv: per simulator term, the medians over points and the error summary."""
    return writers.csv_text(TERM_COLUMNS, [
        [t["term"], t["points"], f"{t['pred_ms']:.4f}", f"{t['meas_ms']:.4f}", f"{t['share']:.3f}",
         f"{t['err_median_abs']:.4f}", f"{t['err_max_abs']:.4f}", f"{t['err_median']:.4f}"]
        for t in term_summary(rows)])


def format_table(result: ValidationResult) -> str:
    lines = [f"{'layout':<28} {'B':>3} {'S':>7} {'meas ms':>9} {'pred ms':>9} {'error':>8}"]
    for r in result.rows:
        p = r.point
        lines.append(f"{p.label:<28} {p.batch:>3} {p.context:>7} {r.measured_s * 1e3:>9.2f} "
                     f"{r.predicted_s * 1e3:>9.2f} {r.error:>+8.1%}")
    s = result.summary()
    lines.append(f"median |error| {s['median_abs']:.1%}, worst {s['max_abs']:.1%}, bias {s['median']:+.1%} "
                 f"over {s['points']} points")
    return "\n".join(lines)


def _summary_lines(result: ValidationResult) -> list[str]:
    s, ms = result.summary(), result.mean_step_summary()
    ring = fit.summarize_errors([r.ring_ar_error for r in result.rows])
    return [f"# Validation: {result.model} on `{result.hardware}` ({time.strftime('%Y-%m-%d')})", "",
            f"{s['points']} points; median |error| **{s['median_abs']:.1%}**, worst **{s['max_abs']:.1%}**, "
            f"bias {s['median']:+.1%} (error = (predicted − measured) / measured; measured = median step of the "
            f"slowest rank). Wall {result.wall_s:.0f} s.", "",
            f"Against the mean step instead (the simulator's TTL is an expected step time): median |error| "
            f"{ms['median_abs']:.1%}, worst {ms['max_abs']:.1%}, bias {ms['median']:+.1%}.", "",
            f"Diagnostic, all-reduce restricted to the ring algorithm (gloo has no one-/two-shot): median |error| "
            f"{ring['median_abs']:.1%}, worst {ring['max_abs']:.1%}, bias {ring['median']:+.1%}."]


def _layout_rows(rows: list[Row]) -> list[list]:
    out = []
    for label in sorted({r.point.label for r in rows}):
        rs = [r for r in rows if r.point.label == label]
        e, er = fit.summarize_errors([r.error for r in rs]), fit.summarize_errors([r.ring_ar_error for r in rs])
        out.append([label, e["points"], f"{e['median_abs']:.1%}", f"{e['max_abs']:.1%}", f"{e['median']:+.1%}",
                    f"{er['median_abs']:.1%}", f"{er['max_abs']:.1%}"])
    return out


def _point_rows(rows: list[Row]) -> list[list]:
    return [[r.point.label, r.point.batch, r.point.context, f"{r.measured_s * 1e3:.2f}", f"{r.predicted_s * 1e3:.2f}",
             f"{r.error:+.1%}", f"{r.predicted_ring_ar_s * 1e3:.2f}", f"{r.ring_ar_error:+.1%}", f"{r.spread:.0%}"]
            for r in rows]


def _term_lines(result: ValidationResult) -> list[str]:
    lines = ["## Per term (median over points where the runtime times it)", "",
             "Measured per term: mean over repeats (compute: slowest rank; blocking collectives: from the last "
             "rank's arrival to the last exit, as calibrated; HOP-B's asynchronous all-to-all: mean over ranks of "
             "issue + wait); `other` = mean step − the named phases, against the simulator's embedding_lm_head + "
             "step_overhead.", ""]
    lines += writers.markdown_table(
        ["term", "points", "predicted ms", "measured ms", "share of step", "median error", "worst", "bias"],
        [[t["term"], t["points"], f"{t['pred_ms']:.3f}", f"{t['meas_ms']:.3f}", f"{t['share']:.0%}",
          f"{t['err_median_abs']:.0%}", f"{t['err_max_abs']:.0%}", f"{t['err_median']:+.0%}"]
         for t in term_summary(result.rows)])
    waits = [r.wait_s for r in result.rows if r.point.ranks > 1]
    lines += ["", f"`{OTHER}`: step time outside the named phases (LM head, final norm, KV slot bookkeeping, Python, "
              "skew between ranks) against the simulator's embedding_lm_head + step_overhead."]
    if waits:
        lines += ["", f"Rank imbalance: per step, ranks that reach a blocking collective first wait for the last "
                  f"{np.median(waits) * 1e3:.2f} ms (median over multi-rank points; worst {max(waits) * 1e3:.2f} ms). "
                  "The slowest rank's compute phases carry it; the simulator assumes balanced ranks."]
    return lines


def markdown(result: ValidationResult) -> str:
    """validation.md: the summary, errors by layout and per point, per term, ops per phase, shape checks."""
    md = _summary_lines(result) + ["", "## By layout", ""]
    md += writers.markdown_table(["layout", "points", "median abs", "worst abs", "bias", "ring-only AR: median abs",
                                  "worst"], _layout_rows(result.rows))
    md += ["", "## Points", ""]
    md += writers.markdown_table(["layout", "B", "S", "measured ms", "predicted ms", "error", "ring-only AR ms",
                                  "error", "spread"], _point_rows(result.rows))
    md += [""] + _term_lines(result)
    if result.op_counts:
        md += ["", "## Ops per decode step (one rank) against the launches the simulator charges", ""]
        md += writers.markdown_table(["runtime phase", "aten ops per step", "simulator launches per step"],
                                     [[ph, n, result.launches.get(ph, 0)]
                                      for ph, n in sorted(result.op_counts.items(), key=lambda kv: -kv[1])])
    md += ["", "## Shapes", ""]
    md += writers.markdown_table(["check", "where", "measured", "predicted", "ok"],
                                 [[c["check"], c["where"], c["measured"], c["predicted"], "yes" if c["ok"] else "NO"]
                                  for c in shape_checks(result.rows)])
    return "\n".join(md + [""] + result.notes) + "\n"


def plot(result: ValidationResult, path: Path) -> None:
    """Predicted vs measured (each point's error beside it), and the step against S at the largest batch."""
    fig, (ax, ax2) = writers.figure(2, width=6.5, height=5.5)
    labels = sorted({r.point.label for r in result.rows})
    palette = writers.colors(labels)
    writers.predicted_vs_measured(ax, [(r.point.label, r.measured_s * 1e3, r.predicted_s * 1e3, r.error)
                                       for r in result.rows], xlabel="measured step ms", ylabel="predicted step ms",
                                  title=f"{result.model} on {result.hardware}: predicted vs measured", palette=palette)
    bmax = max(r.point.batch for r in result.rows)
    for lab in labels:
        rs = sorted((r for r in result.rows if r.point.label == lab and r.point.batch == bmax),
                    key=lambda r: r.point.context)
        if rs:
            s = [r.point.context for r in rs]
            ax2.plot(s, [r.measured_s * 1e3 for r in rs], "o", color=palette[lab], label=f"{lab} measured")
            ax2.plot(s, [r.predicted_s * 1e3 for r in rs], "-", color=palette[lab], lw=1)
    ax2.set(xlabel="context S (tokens)", ylabel="step ms", title=f"B = {bmax}: markers measured, lines predicted")
    ax2.legend(fontsize=7)
    writers.save(fig, path)


def write_outputs(result: ValidationResult, out_dir: Path) -> list[Path]:
    """validation.csv, terms.csv, validation.md, validation.png: the figure is drawn first (the likeliest
    step to fail), then every file is written through a temporary name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, tmp = out_dir / "validation.png", out_dir / ".validation.tmp.png"
    plot(result, tmp)
    paths = [out_dir / "validation.csv", out_dir / "terms.csv", out_dir / "validation.md"]
    try:
        for path, text in zip(paths, (points_csv(result.rows), terms_csv(result.rows), markdown(result)), strict=True):
            write_atomic(path, text)
        tmp.replace(png)
    finally:
        tmp.unlink(missing_ok=True)
    return paths + [png]
