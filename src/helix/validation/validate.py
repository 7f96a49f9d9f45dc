"""Hold the simulator against the runtime: time real decode steps, predict the same steps, compare.

For every grid point (layout KVP x TPA, HOP-B on/off, batch B, context S) the runtime's Llama
decoder (helix.runtime.llama through helix.runtime.launch) runs on one process per rank, one torch
thread per process (a rank is a core, as in ``helix calibrate``):

1. ``prefill`` a short prompt, then extend every rank's KV cache to S tokens with random K/V
   through ``KVCache.reserve`` / ``write`` (the same staged round-robin ownership a long prefill
   would give; a real S-token prefill costs O(S^2) and would time nothing of interest);
2. ``warmup`` decode steps, then ``repeats`` timed ones, each after a barrier; a step's time is the
   slowest rank's, and each runtime phase (``comm.phase_s``: qkv_projection, local_attention,
   kvp_all_to_all, ...) is timed alike; the point's figure is the median over repeats;
3. ``helix.step.simulate`` predicts the step with the calibrated profile, fp32 everywhere, overlap
   ``pipelined`` (HOP-B) or ``serial``, and its breakdown is matched term by term to the phases.

Error = (predicted - measured) / measured, per point and per term. Outputs: validation.csv (points),
terms.csv (per term), validation.md (tables, shape checks), validation.png (predicted vs measured).

Runtime hook used: only public names (launch.prepare/spawn, Comm.create, DECODER, prefill,
decode_step, KVCache.reserve/write, ``next_position``, ``comm.phase_s``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helix.validation import fit

# Simulator breakdown term -> runtime phases that implement it.
TERM_PHASES = {
    "qkv_projection": ("qkv_projection",),
    "attention": ("local_attention",),
    "combine": ("combine_partial_attention",),
    "o_projection": ("o_projection",),
    "ffn": ("ffn",),
    "kvp_all_to_all": ("kvp_all_to_all",),
    "o_projection_all_reduce": ("o_projection_all_reduce",),
    "ffn_all_reduce": ("ffn_all_reduce",),
    "embedding_all_reduce": ("embedding_all_reduce",),
    "lm_head_all_gather": ("lm_head_all_gather",),
}
OTHER = "other"  # step time outside every named phase (LM head, norms, Python) vs embedding_lm_head


@dataclass(frozen=True)
class GridPoint:
    kvp: int
    tpa: int
    hopb: bool
    batch: int
    context: int

    @property
    def ranks(self) -> int:
        return self.kvp * self.tpa

    @property
    def label(self) -> str:
        if self.kvp == 1 and self.tpa == 1:
            return "single rank"
        if self.kvp == 1:
            return f"TP={self.tpa} (KVP=1)"
        return f"Helix KVP={self.kvp} TPA={self.tpa}" + (" HOP-B" if self.hopb else "")


@dataclass(frozen=True)
class Grid:
    model: str
    points: tuple[GridPoint, ...]
    warmup: int = 2
    repeats: int = 5
    prompt_tokens: int = 16
    timeout_s: float = 120.0


def default_grid(cores: int) -> Grid:
    """Timed points use one rank per core: N = 2 layouts on this 2-core machine, plus N = 1."""
    n = max(1, min(cores, 2))
    points = []
    for b in (1, 4, 8):
        for s in (4096, 16384, 65536):
            if n >= 2:
                points.append(GridPoint(2, 1, False, b, s))
                if b > 1:
                    points.append(GridPoint(2, 1, True, b, s))
                points.append(GridPoint(1, 2, False, b, s))
            points.append(GridPoint(1, 1, False, b, s))
    return Grid("bench-llama", tuple(points))


def tiny_grid() -> Grid:
    """Seconds: tiny-llama, KVP = 2 with and without HOP-B, two contexts (tests, smoke runs)."""
    pts = tuple(GridPoint(2, 1, h, 2, s) for s in (256, 1024) for h in (False, True))
    return Grid("tiny-llama", pts, warmup=1, repeats=3, prompt_tokens=8, timeout_s=60.0)


# ---------------------------------------------------------------- measuring (runs inside each rank)


@dataclass(frozen=True)
class _Work:
    payload: object  # helix.runtime.launch.Payload
    points: tuple[GridPoint, ...]
    warmup: int
    repeats: int
    prompt_tokens: int


def _fill_cache(decoder, context: int, seed: int) -> None:
    """Extend every layer's KV to ``context`` tokens with random K/V (owned slots only)."""
    import torch

    cache, arch = decoder.cache, decoder.arch
    start = decoder.next_position
    positions = torch.arange(start, context)
    cache.reserve(positions)
    gen = torch.Generator().manual_seed(seed)
    batch = cache.k[0].shape[0]
    for layer in range(arch.num_layers):
        shape = (batch, context - start, decoder.Kl, arch.head_dim)  # [B, T, K/TPA, Hsz]
        cache.write(layer, torch.randn(shape, generator=gen) * 0.5, torch.randn(shape, generator=gen))
    decoder.next_position = context


def _measure_rank(rank: int, world_size: int, init_method: str, work: _Work) -> list[dict]:
    import torch
    import torch.distributed as dist

    from helix.runtime import registry
    from helix.runtime.comm import Comm
    from helix.runtime.decoder import DecodeOptions

    torch.set_num_threads(1)  # one core per rank, as calibrated
    payload = work.payload
    comm = Comm.create(payload.job.layout, rank, world_size, init_method, timeout_s=payload.job.timeout_s)
    rows = []
    try:
        decoder = registry.family(payload.family).DECODER(payload.arch, payload.state_dict, comm,
                                                          name=payload.job.model)
        for i, p in enumerate(work.points):
            gen = torch.Generator().manual_seed(i)
            prompt = torch.randint(0, payload.arch.vocab_size, (p.batch, work.prompt_tokens), generator=gen)
            out = decoder.prefill(prompt, DecodeOptions(hopb_chunks=p.batch if p.hopb else 1))
            _fill_cache(decoder, p.context, seed=1000 + i)
            tokens = out.next_tokens
            steps, phases = [], []
            for _ in range(work.warmup + work.repeats):
                comm.phase_s.clear()
                if world_size > 1:
                    dist.barrier()
                t0 = time.perf_counter()
                out = decoder.decode_step(tokens)
                steps.append(time.perf_counter() - t0)
                phases.append(dict(comm.phase_s))
                tokens = out.next_tokens
            rows.append({"point": p, "step_s": steps[work.warmup:], "phase_s": phases[work.warmup:],
                         "kv_tokens": decoder.kv_tokens()})
            decoder.cache = None  # free this point's KV before the next one
        return rows
    finally:
        Comm.destroy()


@dataclass
class Measured:
    point: GridPoint
    step_s: float  # median over repeats of the slowest rank's step
    phase_s: dict[str, float]  # median over repeats of the slowest rank's phase time
    samples: int
    spread: float  # (max - min) / median of the step samples


def combine_ranks(point: GridPoint, per_rank: list[dict]) -> Measured:
    """Slowest rank per repeat, then the median over repeats (pure; tested)."""
    steps = np.max(np.array([r["step_s"] for r in per_rank]), axis=0)
    names = sorted({k for r in per_rank for ph in r["phase_s"] for k in ph})
    phases = {}
    for name in names:
        per = np.array([[ph.get(name, 0.0) for ph in r["phase_s"]] for r in per_rank])
        phases[name] = float(np.median(per.max(axis=0)))
    med = float(np.median(steps))
    return Measured(point, med, phases, int(steps.size), float((steps.max() - steps.min()) / med))


def measure(grid: Grid, progress=None) -> tuple[list[Measured], object]:
    """Spawn one job per layout (its points share the process group and weight shards).

    Returns the measurements and the simulator's ModelSpec of the model that ran.
    """
    import torch

    from helix.runtime import registry
    from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, spawn

    out: list[Measured] = []
    model = None
    layouts = sorted({(p.kvp, p.tpa) for p in grid.points}, key=lambda kt: (kt[0] * kt[1], kt))
    for kvp, tpa in layouts:
        pts = tuple(p for p in grid.points if (p.kvp, p.tpa) == (kvp, tpa))
        job = Job(grid.model, kvp, tpa, torch.zeros(1, 1, dtype=torch.int64), (RunSpec(2),),
                  timeout_s=grid.timeout_s)
        payload, _ = prepare(job)
        model = registry.family(payload.family).model_spec(payload.arch, grid.model)
        work = _Work(payload, pts, grid.warmup, grid.repeats, grid.prompt_tokens)
        try:
            ranks = spawn(_measure_rank, kvp * tpa, work, timeout_s=60.0 + 30.0 * len(pts))
        except WorkerError as exc:
            if exc.input_error() is not None:
                raise exc.input_error() from None
            raise
        for j, p in enumerate(pts):
            out.append(combine_ranks(p, [ranks[r][j] for r in range(kvp * tpa)]))
        if progress:
            progress(f"{pts[0].label.split(' HOP-B')[0]}: {len(pts)} points")
    return out, model


# ---------------------------------------------------------------- predicting and comparing


def model_spec_for(model_name: str):
    from helix.runtime import registry

    entry = registry.get_model(model_name)
    fam = registry.family(entry.family)
    return fam.model_spec(fam.arch_from_hf_config(entry.build().config), model_name)


def predict(model, hw, p: GridPoint):
    """The simulator's StepResult for a grid point (fp32 everywhere, as the runtime computes)."""
    from helix.layout import Layout
    from helix.specs.precision import PrecisionSpec
    from helix.step import simulate

    return simulate(model, hw, Layout.helix(kvp=p.kvp, tpa=p.tpa), p.batch, p.context,
                    PrecisionSpec.uniform("fp32"), overlap="pipelined" if p.hopb else "serial")


@dataclass
class Row:
    point: GridPoint
    measured_s: float
    predicted_s: float
    spread: float
    terms: dict[str, tuple[float, float]] = field(default_factory=dict)  # term -> (predicted, measured) s

    @property
    def error(self) -> float:
        return float(fit.relative_errors(self.predicted_s, self.measured_s))


def compare(measured: Measured, breakdown: dict[str, float], ttl_s: float) -> Row:
    """Match the simulator's terms to the measured phases; the rest of the step is ``other``."""
    terms = {}
    named = 0.0
    for term, phases in TERM_PHASES.items():
        m = sum(measured.phase_s.get(ph, 0.0) for ph in phases)
        named += m
        pr = float(breakdown.get(term, 0.0))
        if pr > 0 or m > 0:
            terms[term] = (pr, m)
    terms[OTHER] = (float(breakdown.get("embedding_lm_head", 0.0)), max(measured.step_s - named, 0.0))
    return Row(measured.point, measured.step_s, float(ttl_s), measured.spread, terms)


@dataclass
class ValidationResult:
    rows: list[Row]
    hardware: str
    model: str
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return fit.summarize_errors([r.error for r in self.rows])

    def summary_json(self) -> dict:
        s = self.summary()
        return {"points": s["points"], "median_abs_error": round(s["median_abs"], 4),
                "max_abs_error": round(s["max_abs"], 4), "bias": round(s["median"], 4),
                "hardware": self.hardware, "wall_s": round(self.wall_s, 1)}


def run_validation(grid: Grid, hw, repeats: int | None = None, progress=None) -> ValidationResult:
    from dataclasses import replace

    t0 = time.perf_counter()
    if repeats is not None:
        grid = replace(grid, repeats=repeats)
    measured, model = measure(grid, progress)
    rows = []
    for m in measured:
        res = predict(model, hw, m.point)
        rows.append(compare(m, {k: float(v) for k, v in res.breakdown.items()}, float(res.ttl_s)))
    return ValidationResult(rows, hw.name, grid.model, time.perf_counter() - t0)


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
        a2a = [r.terms["kvp_all_to_all"][1] for r in rs if "kvp_all_to_all" in r.terms]
        if len(a2a) == len(rs) and not rs[0].point.hopb:
            ratio = max(a2a) / max(min(a2a), 1e-12)
            checks.append({"check": "all-to-all independent of context", "where": f"{label}, B={b}",
                           "measured": "  ".join(f"S={int(x)}: {t * 1e3:.2f} ms" for x, t in zip(s, a2a, strict=True)),
                           "predicted": f"{rs[0].terms['kvp_all_to_all'][0] * 1e3:.2f} ms at every S",
                           "ok": ratio < 1.5})
    by_key = {(r.point.kvp, r.point.tpa, r.point.hopb, r.point.batch, r.point.context): r for r in rows}
    for (kvp, tpa, hopb, b, s), on in sorted(by_key.items()):
        off = by_key.get((kvp, tpa, False, b, s))
        if not hopb or off is None:
            continue
        gm = (off.measured_s - on.measured_s) / off.measured_s
        gp = (off.predicted_s - on.predicted_s) / off.predicted_s
        checks.append({"check": "HOP-B gain", "where": f"KVP={kvp} B={b} S={s}", "measured": f"{gm:+.1%}",
                       "predicted": f"{gp:+.1%}", "ok": (gp <= 0.01 or gm > 0) and abs(gm - gp) < 0.1})
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


def points_csv(rows: list[Row]) -> str:
    terms = sorted({t for r in rows for t in r.terms})
    head = ["layout", "kvp", "tpa", "hopb", "batch", "context", "measured_ms", "predicted_ms", "error", "spread"]
    head += [f"{t}_{w}_ms" for t in terms for w in ("pred", "meas")]
    lines = [",".join(head)]
    for r in rows:
        p = r.point
        vals = [p.label, p.kvp, p.tpa, int(p.hopb), p.batch, p.context, f"{r.measured_s * 1e3:.4f}",
                f"{r.predicted_s * 1e3:.4f}", f"{r.error:.4f}", f"{r.spread:.3f}"]
        for t in terms:
            pr, me = r.terms.get(t, (0.0, 0.0))
            vals += [f"{pr * 1e3:.4f}", f"{me * 1e3:.4f}"]
        lines.append(",".join(str(v) for v in vals))
    return "\n".join(lines) + "\n"


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


def markdown(result: ValidationResult) -> str:
    s = result.summary()
    md = [f"# Validation: {result.model} on `{result.hardware}` ({time.strftime('%Y-%m-%d')})", "",
          f"{s['points']} points; median |error| **{s['median_abs']:.1%}**, worst **{s['max_abs']:.1%}**, "
          f"bias {s['median']:+.1%} (error = (predicted − measured) / measured). Wall {result.wall_s:.0f} s.", "",
          "## Points", "", "| layout | B | S | measured ms | predicted ms | error | spread |",
          "|---|---|---|---|---|---|---|"]
    for r in result.rows:
        p = r.point
        md.append(f"| {p.label} | {p.batch} | {p.context} | {r.measured_s * 1e3:.2f} | {r.predicted_s * 1e3:.2f} | "
                  f"{r.error:+.1%} | {r.spread:.0%} |")
    md += ["", "## Per term (median over points where the runtime times it)", "",
           "| term | points | predicted ms | measured ms | share of step | median error | worst | bias |",
           "|---|---|---|---|---|---|---|---|"]
    for t in term_summary(result.rows):
        md.append(f"| {t['term']} | {t['points']} | {t['pred_ms']:.3f} | {t['meas_ms']:.3f} | {t['share']:.0%} | "
                  f"{t['err_median_abs']:.0%} | {t['err_max_abs']:.0%} | {t['err_median']:+.0%} |")
    md += ["", f"`{OTHER}`: step time outside the named phases (LM head, final norm, Python) against the "
           "simulator's embedding_lm_head.", "", "## Shapes", "", "| check | where | measured | predicted | ok |",
           "|---|---|---|---|---|"]
    for c in shape_checks(result.rows):
        ok = "yes" if c["ok"] else "NO"
        md.append(f"| {c['check']} | {c['where']} | {c['measured']} | {c['predicted']} | {ok} |")
    md += [""] + result.notes
    return "\n".join(md) + "\n"


def plot(result: ValidationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.5))
    labels = sorted({r.point.label for r in result.rows})
    colors = dict(zip(labels, plt.cm.tab10.colors, strict=False))
    for r in result.rows:
        ax.scatter(r.measured_s * 1e3, r.predicted_s * 1e3, color=colors[r.point.label], s=18)
        ax.annotate(f"{r.error:+.0%}", (r.measured_s * 1e3, r.predicted_s * 1e3), fontsize=6,
                    xytext=(3, -3), textcoords="offset points")
    lo = min(min(r.measured_s, r.predicted_s) for r in result.rows) * 1e3 * 0.8
    hi = max(max(r.measured_s, r.predicted_s) for r in result.rows) * 1e3 * 1.2
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.85, xs * 1.15, color="0.85", label="±15 %")
    ax.set(xscale="log", yscale="log", xlabel="measured step ms", ylabel="predicted step ms",
           title=f"{result.model} on {result.hardware}: predicted vs measured")
    for lab in labels:
        ax.scatter([], [], color=colors[lab], label=lab)
    ax.legend(fontsize=7)
    bmax = max(r.point.batch for r in result.rows)
    for lab in labels:
        rs = sorted((r for r in result.rows if r.point.label == lab and r.point.batch == bmax),
                    key=lambda r: r.point.context)
        if rs:
            s = [r.point.context for r in rs]
            ax2.plot(s, [r.measured_s * 1e3 for r in rs], "o", color=colors[lab], label=f"{lab} measured")
            ax2.plot(s, [r.predicted_s * 1e3 for r in rs], "-", color=colors[lab], lw=1)
    ax2.set(xlabel="context S (tokens)", ylabel="step ms", title=f"B = {bmax}: markers measured, lines predicted")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: ValidationResult, out_dir: Path) -> list[Path]:
    """validation.csv, terms.csv, validation.md, validation.png; each written whole or not at all."""
    from helix.validation.calibrate import write_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    term_rows = term_summary(result.rows)
    terms_text = "term,points,pred_ms,meas_ms,share,err_median_abs,err_max_abs,err_median\n" + "".join(
        f"{t['term']},{t['points']},{t['pred_ms']:.4f},{t['meas_ms']:.4f},{t['share']:.3f},"
        f"{t['err_median_abs']:.4f},{t['err_max_abs']:.4f},{t['err_median']:.4f}\n" for t in term_rows)
    paths = [out_dir / "validation.csv", out_dir / "terms.csv", out_dir / "validation.md"]
    for path, text in zip(paths, (points_csv(result.rows), terms_text, markdown(result)), strict=True):
        write_atomic(path, text)
    png = out_dir / "validation.png"
    tmp = out_dir / ".validation.tmp.png"
    plot(result, tmp)
    tmp.replace(png)
    return paths + [png]
