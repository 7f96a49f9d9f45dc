"""Fit every table of one hardware system and engine into an OpModel, report the held-out errors,
and write the preset files ``specs/presets/hardware/op_models/<preset>.<engine>.json``.

Each form's predictions are evaluated through OpForm.time_s / CollectiveForm.time_s with the stored
(rounded) numbers and the simulator's hardware numbers, so the reported errors are the simulator's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from helix.cost.optime import CollectiveForm, OpForm, OpModel, op_model_to_mapping
from helix.outputs import write_atomic as write_atomic  # the one shared copy (re-exported)
from helix.validation.perf_db import fit, forms, tables

OP_MODEL_DIR = Path(__file__).resolve().parents[2] / "specs" / "presets" / "hardware" / "op_models"
GENERATED_BY = "helix calibrate --from-perf-db (do not edit)"


@dataclass(frozen=True)
class TableFit:
    """One fitted form and its held-out errors (fractions)."""

    hardware: str
    engine: str
    table: str
    rows_fit: int
    rows_test: int
    median_abs_error: float
    p90_abs_error: float

    def to_dict(self) -> dict:
        return {"hardware": self.hardware, "engine": self.engine, "table": self.table, "rows_fit": self.rows_fit,
                "rows_test": self.rows_test, "median_abs_error": round(self.median_abs_error, 4),
                "p90_abs_error": round(self.p90_abs_error, 4)}


def _log2_axes(spec: forms.TableSpec, features: dict, all_rows: np.ndarray):
    """Kept axes, their knots, their log2 values (axes with one value in the table are dropped)."""
    axes, knots = [], []
    for axis, spacing in zip(spec.axes, spec.spacing, strict=True):
        kn = fit.choose_knots(np.log2(np.asarray(features[axis], dtype=np.float64)[all_rows]), spacing)
        if kn is not None:
            axes.append(axis)
            knots.append(kn)
    return axes, knots


def _correction(spec, features, log_ratio, train):
    everything = np.ones(log_ratio.shape, dtype=bool)
    axes, knots = _log2_axes(spec, features, everything)
    if not axes:
        return None
    x = [np.log2(np.asarray(features[a], dtype=np.float64))[train] for a in axes]
    return fit.fit_correction(axes, knots, x, log_ratio[train], spec.smoothness, spec.tension)


def fit_op(spec: forms.TableSpec, rows: tables.Rows, hw: dict) -> tuple[OpForm, np.ndarray, np.ndarray]:
    """The OpForm of one table (unrounded source), its predictions and the held-out mask."""
    b, f, features, peak = forms.op_quantities(spec, rows.columns, hw)
    features = {k: np.asarray(v, dtype=np.float64) for k, v in features.items()}
    test = fit.holdout_mask(*forms.key_columns(rows.columns))
    train = ~test
    fixed, eta_m, eta_f = (fit.round_sig(v) for v in fit.fit_op_base(b[train], f[train], rows.seconds[train],
                                                                      hw["hbm"], peak))
    base = OpForm(fixed_s=fixed, hbm_efficiency=eta_m, flop_efficiency=eta_f)
    log_ratio = np.log(rows.seconds) - np.log(base.time_s(b, f, hw["hbm"], peak, features))
    form = OpForm(fixed_s=fixed, hbm_efficiency=eta_m, flop_efficiency=eta_f,
                  correction=_correction(spec, features, log_ratio, train))
    return form, form.time_s(b, f, hw["hbm"], peak, features), test


def fit_collective(spec: forms.TableSpec, rows: tables.Rows) -> tuple[CollectiveForm, np.ndarray, np.ndarray]:
    n = rows.columns["n_bytes"].astype(np.float64)
    p = rows.columns["group"].astype(np.float64)
    kind = spec.collective_kind
    test = fit.holdout_mask(*forms.key_columns(rows.columns))
    train = ~test
    lat, per_doubling, bw = (fit.round_sig(v) for v in fit.fit_collective_base(kind, n[train], p[train],
                                                                               rows.seconds[train]))
    base = CollectiveForm(latency_s=lat, latency_per_doubling_s=per_doubling, bus_bytes_per_s=bw,
                          max_measured_group=int(p.max()))
    features = {"group": p, "bytes": n}
    if "experts" in spec.axes:
        features["experts"] = rows.columns["experts"].astype(np.float64)
    log_ratio = np.log(rows.seconds) - np.log(base.time_s(kind, n, p))
    form = CollectiveForm(latency_s=lat, latency_per_doubling_s=per_doubling, bus_bytes_per_s=bw,
                          max_measured_group=int(p.max()), correction=_correction(spec, features, log_ratio, train))
    return form, form.time_s(kind, n, p, experts=features.get("experts")), test


def _source(spec: forms.TableSpec, rows: tables.Rows, test: np.ndarray, median: float, p90: float) -> str:
    text = (f"aiconfigurator-core {tables.PACKAGE_VERSION} systems/data/{rows.path}; rows: {rows.filters}; "
            f"{int((~test).sum())} fit / {int(test.sum())} held out; held-out |pred/meas - 1| "
            f"median {100 * median:.1f} %, p90 {100 * p90:.1f} %")
    return f"{text}; {spec.note}" if spec.note else text


def fit_table(spec: forms.TableSpec, rows: tables.Rows, hw: dict):
    """(form with its source, median, p90, rows fit, rows test) of one table."""
    if spec.collective_kind is None:
        form, predicted, test = fit_op(spec, rows, hw)
    else:
        form, predicted, test = fit_collective(spec, rows)
    median, p90 = fit.error_stats(predicted[test], rows.seconds[test])
    form = replace(form, source=_source(spec, rows, test, median, p90))
    return form, median, p90, int((~test).sum()), int(test.sum())


def build_op_model(hardware: str, engine: str, only: set[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> tuple[OpModel | None, list[TableFit]]:
    """Fit every table present for (hardware, engine); ``only`` restricts to those table names."""
    hw = forms.HARDWARE[hardware]
    system = hw["system"]
    op_forms, collectives, fits = {}, {}, []
    for spec in forms.table_specs():
        if only is not None and spec.name not in only:
            continue
        reader = getattr(tables, spec.reader)
        rows = reader(system, *spec.args) if spec.reader == "nccl" else reader(system, engine, *spec.args)
        if rows is None or rows.seconds.size < 10:
            continue
        form, median, p90, n_fit, n_test = fit_table(spec, rows, hw)
        (op_forms if spec.collective_kind is None else collectives)[spec.name] = form
        fits.append(TableFit(hardware, engine, spec.name, n_fit, n_test, median, p90))
        if progress:
            progress(f"{hardware} {engine} {spec.name}: {n_fit} fit, {n_test} held out, "
                     f"median {100 * median:.1f} %, p90 {100 * p90:.1f} %")
    if not op_forms and not collectives:
        return None, fits
    source = (f"fitted by `helix calibrate --from-perf-db` to aiconfigurator-core {tables.PACKAGE_VERSION} "
              f"measured tables, systems/data/{system} ({engine}); see each form's source")
    return OpModel(engine=engine, forms=op_forms, collectives=collectives, source=source), fits


def op_model_json(hardware: str, model: OpModel) -> str:
    """The op-model file: JSON (a YAML subset; parses in ~15 ms where YAML takes ~0.5 s for the ~70,000
    correction coefficients), one form per line so a refit's diff reads form by form."""
    body = {"generated_by": GENERATED_BY, "hardware": hardware, **op_model_to_mapping(model)}
    lines = ["{"]
    items = list(body.items())
    for i, (key, value) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if isinstance(value, dict) and value:
            lines.append(f"{json.dumps(key)}: {{")
            inner = list(value.items())
            for j, (k, v) in enumerate(inner):
                lines.append(f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                             + ("," if j < len(inner) - 1 else ""))
            lines.append("}" + end)
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}{end}")
    return "\n".join(lines + ["}"]) + "\n"


def op_model_path(out_dir: Path, hardware: str, engine: str) -> Path:
    return Path(out_dir) / f"{hardware}.{engine}.json"
