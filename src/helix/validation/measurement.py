"""What ``helix calibrate`` records, and the pure reductions over it (no torch: tested by hand).

A ``Measurement`` is one measured quantity (what, its size, the median time, the derived rate); the
probes (helix.validation.probes, runtime_probe, collective_probe) produce them, and
helix.validation.profile turns them into a hardware profile. Here: pooling repeated rounds, the slowest
rank of a concurrent probe, the overlap efficiency and the attention's bandwidth as a slope.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from helix.validation import fit
from helix.validation.writers import csv_text

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Measurement:
    """One measured quantity: what, its size parameters, the median time and the derived rate."""

    what: str  # stream_read | gemv | matmul | launch | all_reduce | all_gather | all_to_all | ...
    dtype: str
    size: str  # human label (bytes, MxNxK, ...)
    n_bytes: float  # bytes read or message bytes (simulator convention)
    flops: float
    group_size: int
    median_s: float
    rate: float  # bytes/s or FLOP/s where meaningful, else 0
    samples: int

    def row(self) -> dict:
        return asdict(self)


COLUMNS = list(Measurement.__dataclass_fields__)


def measurements_csv(measurements: list[Measurement]) -> str:
    """``<profile>.measurements.csv``: one row per measurement, the fields in order."""
    return csv_text(COLUMNS, [list(m.row().values()) for m in measurements])


def pool_rounds(measurements: list[Measurement]) -> list[Measurement]:
    """Rows measured in several rounds (same what, dtype, size and group) pooled into one: the median
    over rounds of the time and of the rate, the samples summed; first-seen order. Pure; tested."""
    groups: dict[tuple, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.what, m.dtype, m.size, m.group_size), []).append(m)
    out = []
    for rows in groups.values():
        first = rows[0]
        out.append(Measurement(first.what, first.dtype, first.size, first.n_bytes, first.flops, first.group_size,
                               float(np.median([m.median_s for m in rows])), float(np.median([m.rate for m in rows])),
                               sum(m.samples for m in rows)))
    return out


def slowest_rank_rows(rows_per_rank: list[list[dict]]) -> list[dict]:
    """Every rank's concurrent compute rows reduced to the slowest rank's: a decode step waits for its
    slowest rank. ``stream_read_all_ranks``: the lowest rate; ``runtime_step_all_ranks`` and
    ``decode_attention_all_ranks``: the longest time (per label)."""
    out = []
    for i, row in enumerate(rows_per_rank[0]):
        same = [rows[i] for rows in rows_per_rank]
        if row["what"] == "stream_read_all_ranks":
            row = min(same, key=lambda r: r["rate"])
        elif row["what"] in ("runtime_step_all_ranks", "decode_attention_all_ranks"):
            row = max(same, key=lambda r: r["median_s"])
        out.append(dict(row, size=f"{row['size']}, slowest of {len(same)} ranks"))
    return out


def overlap_efficiency(t_comm, t_compute, t_both) -> np.ndarray:
    """Per sample, the fraction of the shorter of (communication, compute) that hid when both ran at
    once: (t_comm + t_compute - t_both) / min(t_comm, t_compute), clipped to [0, 1]."""
    t_comm, t_compute, t_both = (np.asarray(x, dtype=np.float64) for x in (t_comm, t_compute, t_both))
    hidden = t_comm + t_compute - t_both
    return np.clip(hidden / np.maximum(np.minimum(t_comm, t_compute), 1e-12), 0.0, 1.0)


def overlap_rows(everyone: list[list[dict]], world: int) -> list[Measurement]:
    """Measurements from every rank's overlap samples (means over ranks per repetition): per message
    size the median all-to-all, attention and together, and eta per size (in ``rate``); last, the
    pooled ``comm_overlap`` row whose ``rate`` is the median eta over every repetition and size."""
    t = np.mean(np.array([[s["times"] for s in per_rank] for per_rank in everyone]), axis=0)  # [samples, 3]
    sizes = np.array([s["n_bytes"] for s in everyone[0]])
    tokens = {s["n_bytes"]: s["tokens"] for s in everyone[0]}
    eta = overlap_efficiency(t[:, 0], t[:, 1], t[:, 2])
    rows = []
    for nb in dict.fromkeys(sizes.tolist()):
        sel = sizes == nb
        label = f"{nb} B a2a + attention S={tokens[nb]}"
        for what, col in (("overlap_all_to_all", 0), ("overlap_attention", 1), ("overlap_both", 2)):
            rate = float(np.median(eta[sel])) if what == "overlap_both" else 0.0
            rows.append(Measurement(what, "fp32", label, float(nb), 0.0, world, float(np.median(t[sel, col])),
                                    rate, int(sel.sum())))
    rows.append(Measurement("comm_overlap", "fp32", ", ".join(f"{nb} B" for nb in dict.fromkeys(sizes.tolist())),
                            0.0, 0.0, world, float(np.median(t[:, 2])), float(np.median(eta)), int(eta.size)))
    return rows


def attention_rate(rows: list[Measurement]) -> float:
    """Bytes/s of decode attention: the slope of t = c + bytes / rate over the sizes (relative least
    squares), so the fixed cost of a call (charged by ``kernel_launch_s``) is not read as bandwidth;
    one size: its own rate."""
    if len(rows) == 1:
        return rows[0].rate
    line = fit.fit_line([m.n_bytes for m in rows], [m.median_s for m in rows], relative=True)
    beta = line.coefficients["beta"]
    return 1.0 / beta if beta > 0 else max(m.rate for m in rows)
