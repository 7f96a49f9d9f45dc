"""Op times fitted to measured kernel tables: a roofline base times a log-space correction grid.

One form per measured table (GEMM per dtype, generation attention per KV dtype, MLA, MLA BMM, MoE,
elementwise, each collective). A form's time is

    t = (fixed_s + max(bytes / (hbm_efficiency * MemBW), flops / (flop_efficiency * peak))) * exp(g(x))

where ``x`` are log2 features of the op's shape (GEMM: tokens, n, k; attention: batch, kv_tokens, ...)
and ``g`` is a multilinear interpolant on a coarse knot grid (the correction). The base carries the
physics (fixed launch-and-tail cost, streaming bandwidth, tensor-core rate) and extrapolates beyond
the table, where the correction is held at its edge value; the correction carries what a roofline
cannot (kernel selection, wave quantisation, split-K, tile padding). Outside the measured range the
time therefore scales as bytes or FLOPs at the efficiency the table shows at its edge: an argued
extrapolation for long KV (S > the table's 131,072 tokens) and large shapes.

Collectives: ``t = (latency_s + latency_per_doubling_s * log2(p) + traffic * n / bus_bytes_per_s) * exp(g)``
with traffic = 2 (p-1)/p for an all-reduce and (p-1)/p otherwise (every algorithm moves that much per
rank), g over (log2 group, log2 bytes). A group larger than the tables' largest (NCCL rows stop at 4 GPUs
on GB200, 8 on HGX) keeps the log2 p latency growth and the edge correction: NCCL's tree and NVLS
latencies grow with the number of steps, log2 p, not with p [NCCL tuning.cc [S7]].

Fitted by ``helix calibrate --from-perf-db`` (helix.validation.perf_db) from aiconfigurator-core's
tables; the fitted values live in the hardware presets with their sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# The shape features an op may carry (all > 0; the correction reads log2 of those its axes name).
FEATURES = ("tokens", "n", "k", "batch", "kv_tokens", "q_heads", "kv_heads", "heads", "local_experts",
            "expert_width", "hidden", "topk", "experts", "rows", "width", "group", "bytes")


def _log2(x):
    return np.log2(np.maximum(np.asarray(x, dtype=np.float64), 1e-30))


@dataclass(frozen=True)
class Correction:
    """Multilinear interpolant of a log time ratio on a knot grid over log2 features (clamped at the edges)."""

    axes: tuple[str, ...]
    knots: tuple[tuple[float, ...], ...]  # log2 feature values, increasing, per axis
    coefficients: tuple[float, ...]  # natural log of t / t_base at each grid node, C order

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.knots) or not self.axes:
            raise ValueError("correction: one knot list per axis")
        for a in self.axes:
            if a not in FEATURES:
                raise ValueError(f"correction: unknown axis {a!r}; allowed: {', '.join(FEATURES)}")
        for kn in self.knots:
            if len(kn) < 2 or not all(np.isfinite(kn)) or any(not b > a for a, b in zip(kn, kn[1:], strict=False)):
                raise ValueError("correction: each axis needs >= 2 finite, increasing knots")
        if not all(np.isfinite(self.coefficients)):
            raise ValueError("correction: coefficients must be finite")
        size = int(np.prod([len(k) for k in self.knots]))
        if len(self.coefficients) != size:
            raise ValueError(f"correction: {len(self.coefficients)} coefficients for a grid of {size}")
        object.__setattr__(self, "_grid", np.asarray(self.coefficients, dtype=np.float64))
        object.__setattr__(self, "_knots", tuple(np.asarray(k, dtype=np.float64) for k in self.knots))
        # evenly spaced knots (the fit's choice) are located by arithmetic instead of a search
        object.__setattr__(self, "_step", tuple(float(k[1] - k[0])
                                                if np.allclose(np.diff(k), k[1] - k[0], rtol=0.0, atol=1e-12) else 0.0
                                                for k in self._knots))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(k) for k in self.knots)

    def log_ratio(self, features: dict) -> np.ndarray:
        """g(x) for arrays of features (broadcast against each other): gather the 2^d grid nodes around
        each point, then interpolate linearly along one axis after the other."""
        strides = np.cumprod((1,) + self.shape[:0:-1])[::-1]
        base, fractions = 0, []
        for axis, (name, kn, step) in enumerate(zip(self.axes, self._knots, self._step, strict=True)):
            x = np.clip(_log2(features[name]), kn[0], kn[-1])
            if step:
                u = (x - kn[0]) / step
                i = np.minimum(u.astype(np.int64), len(kn) - 2)
                fractions.append(u - i)
            else:
                i = np.clip(np.searchsorted(kn, x, side="right") - 1, 0, len(kn) - 2)
                fractions.append((x - kn[i]) / (kn[i + 1] - kn[i]))
            base = base + i * int(strides[axis])
        values = [self._grid.take(base + sum(int(strides[a]) for a in range(len(self.axes)) if (corner >> a) & 1))
                  for corner in range(2 ** len(self.axes))]
        for w in fractions:  # along each axis in turn, neighbouring corners pair up: lerp them together
            values = [lo + w * (hi - lo) for lo, hi in zip(values[0::2], values[1::2], strict=True)]
        return values[0]


def correction_factor(correction: Correction | None, features: dict):
    return 1.0 if correction is None else np.exp(correction.log_ratio(features))


@dataclass(frozen=True)
class OpForm:
    """Time of one kernel kind from its bytes, FLOPs and shape (see the module docstring)."""

    fixed_s: float
    hbm_efficiency: float
    flop_efficiency: float
    correction: Correction | None = None
    source: str = field(default="", compare=False)

    def time_s(self, bytes_moved, flops, hbm_bytes_per_s: float, peak_flops_per_s: float, features: dict):
        memory = np.asarray(bytes_moved, dtype=np.float64) / (self.hbm_efficiency * hbm_bytes_per_s)
        compute = np.asarray(flops, dtype=np.float64) / (self.flop_efficiency * peak_flops_per_s)
        return (self.fixed_s + np.maximum(memory, compute)) * correction_factor(self.correction, features)


def collective_traffic(kind: str, p):
    """Bytes that cross a rank's links per byte of message: 2(p-1)/p for an all-reduce, (p-1)/p otherwise."""
    p = np.asarray(p, dtype=np.float64)
    share = (p - 1) / np.maximum(p, 1.0)
    return 2 * share if kind == "all_reduce" else share


@dataclass(frozen=True)
class CollectiveForm:
    """alpha(p) + traffic(p) n / bus bandwidth, times a correction over (log2 group, log2 bytes)."""

    latency_s: float
    latency_per_doubling_s: float
    bus_bytes_per_s: float
    max_measured_group: int
    correction: Correction | None = None
    source: str = field(default="", compare=False)

    def time_s(self, kind: str, n_bytes, p, bus_bytes_per_s: float | None = None, extra_latency_s=0.0,
               experts=None):
        """Seconds for a message of ``n_bytes`` over ``p`` ranks (0 where p = 1). ``bus_bytes_per_s``
        overrides the fitted bandwidth (a group that leaves the scale-up domain runs at the network's);
        ``experts`` (the MoE's expert slots) feeds a correction with an experts axis (the MoE all-to-alls:
        DeepEP's low-latency kernels signal every expert, so small messages cost more with more experts)."""
        p = np.asarray(p, dtype=np.float64)
        n = np.asarray(n_bytes, dtype=np.float64)
        bw = self.bus_bytes_per_s if bus_bytes_per_s is None else bus_bytes_per_s
        alpha = self.latency_s + self.latency_per_doubling_s * _log2(np.maximum(p, 1.0)) + extra_latency_s
        features = {"group": np.maximum(p, 2.0), "bytes": np.maximum(n, 1.0)}
        if self.correction is not None and "experts" in self.correction.axes:
            if experts is None:
                raise ValueError("this collective form's correction reads the expert count: pass experts")
            features["experts"] = experts
        t = (alpha + collective_traffic(kind, p) * n / bw) * correction_factor(self.correction, features)
        return np.where(p > 1, t, 0.0)


# GEMM tables per compute format; a format without its own table runs on the next wider one
# (FP4 on Hopper has no tensor cores and no table: the FP8 kernels, bytes as stored).
GEMM_TABLE = {"fp4": "gemm.nvfp4", "nvfp4": "gemm.nvfp4", "mxfp4": "gemm.nvfp4", "fp8": "gemm.fp8",
              "mxfp8": "gemm.fp8_block", "fp8_block": "gemm.fp8_block", "bf16": "gemm.bf16", "fp16": "gemm.bf16",
              "fp32": "gemm.bf16"}
FALLBACK = {"gemm.nvfp4": "gemm.fp8_block", "gemm.fp8_block": "gemm.fp8", "gemm.fp8": "gemm.bf16",
            "moe.nvfp4": "moe.fp8_block", "moe.fp8_block": "moe.fp8", "moe.fp8": "moe.bf16",
            "moe_deepep.fp8_block": "moe.fp8_block", "moe_deepep.nvfp4": "moe.nvfp4", "moe_deepep.fp8": "moe.fp8",
            "moe_deepep.bf16": "moe.bf16",
            "moe_eplb.nvfp4": "moe_eplb.fp8_block", "moe_eplb.fp8_block": "moe_eplb.fp8",
            "moe_eplb.fp8": "moe_eplb.bf16",
            "moe_deepep_eplb.fp8_block": "moe_eplb.fp8_block", "moe_deepep_eplb.nvfp4": "moe_eplb.nvfp4",
            "moe_deepep_eplb.fp8": "moe_eplb.fp8", "moe_deepep_eplb.bf16": "moe_eplb.bf16",
            "attention.fp4": "attention.fp8", "attention.fp8": "attention.bf16",
            "mla.fp4": "mla.fp8", "mla.fp8": "mla.bf16",
            "mla_bmm_pre.fp8": "mla_bmm_pre.bf16", "mla_bmm_post.fp8": "mla_bmm_post.bf16",
            "custom_all_reduce": "all_reduce"}


@dataclass(frozen=True)
class OpModel:
    """Every fitted form of one engine on one GPU: ``forms`` by table name, ``collectives`` by kind."""

    engine: str
    forms: dict[str, OpForm]
    collectives: dict[str, CollectiveForm]
    source: str = field(default="", compare=False)

    def form(self, table: str) -> OpForm:
        seen = table
        while seen not in self.forms:
            if seen not in FALLBACK:
                raise KeyError(f"op model {self.engine!r} has no form for {table!r}")
            seen = FALLBACK[seen]
        return self.forms[seen]

    def scaled(self, fixed: float = 1.0, hbm_efficiency: float = 1.0, flop_efficiency: float = 1.0,
               collective_latency: float = 1.0, collective_bandwidth: float = 1.0,
               collective_latency_per_doubling: float = 1.0) -> OpModel:
        """The same model with every op's fixed cost, efficiencies, and every collective's latency and
        bandwidth multiplied (the sensitivity study's variants; corrections unchanged);
        ``collective_latency_per_doubling`` scales only the latency's growth with the group."""
        forms = {k: replace(f, fixed_s=f.fixed_s * fixed, hbm_efficiency=f.hbm_efficiency * hbm_efficiency,
                            flop_efficiency=f.flop_efficiency * flop_efficiency) for k, f in self.forms.items()}
        colls = {k: replace(c, latency_s=c.latency_s * collective_latency,
                            latency_per_doubling_s=c.latency_per_doubling_s * collective_latency
                            * collective_latency_per_doubling,
                            bus_bytes_per_s=c.bus_bytes_per_s * collective_bandwidth)
                 for k, c in self.collectives.items()}
        return replace(self, forms=forms, collectives=colls)

    def collective(self, kind: str) -> CollectiveForm | None:
        seen = kind
        while seen not in self.collectives:
            if seen not in FALLBACK:
                return None
            seen = FALLBACK[seen]
        return self.collectives[seen]


# ---------------------------------------------------------------- plain mappings (the preset files' form)

def _correction_from(where: str, data) -> Correction | None:
    if data is None:
        return None
    try:
        return Correction(axes=tuple(data["axes"]), knots=tuple(tuple(float(v) for v in k) for k in data["knots"]),
                          coefficients=tuple(float(c) for c in data["coefficients"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}.correction: {exc}") from None


def _correction_to(c: Correction | None):
    if c is None:
        return None
    return {"axes": list(c.axes), "knots": [list(k) for k in c.knots], "coefficients": list(c.coefficients)}


def op_model_from_mapping(where: str, data: dict) -> OpModel:
    """An OpModel from the mapping a fitted preset file holds (raises ValueError naming the field)."""
    forms, collectives = {}, {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must hold a mapping with forms and collectives")
    for key in ("forms", "collectives"):
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{where}.{key}: must be a mapping of name: form")
    try:
        for name, f in (data.get("forms") or {}).items():
            forms[name] = OpForm(fixed_s=float(f["fixed_s"]), hbm_efficiency=float(f["hbm_efficiency"]),
                                 flop_efficiency=float(f["flop_efficiency"]),
                                 correction=_correction_from(f"{where}.forms.{name}", f.get("correction")),
                                 source=str(f.get("source", "")))
        for name, c in (data.get("collectives") or {}).items():
            collectives[name] = CollectiveForm(
                latency_s=float(c["latency_s"]), latency_per_doubling_s=float(c["latency_per_doubling_s"]),
                bus_bytes_per_s=float(c["bus_bytes_per_s"]), max_measured_group=int(c["max_measured_group"]),
                correction=_correction_from(f"{where}.collectives.{name}", c.get("correction")),
                source=str(c.get("source", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: missing or malformed field ({exc})") from None
    for name, f in forms.items():
        if not (f.fixed_s >= 0 and f.hbm_efficiency > 0 and f.flop_efficiency > 0):
            raise ValueError(f"{where}.forms.{name}: fixed_s must be >= 0 and efficiencies > 0")
    for name, c in collectives.items():
        if not (c.latency_s >= 0 and c.latency_per_doubling_s >= 0 and c.bus_bytes_per_s > 0
                and c.max_measured_group >= 1):
            raise ValueError(f"{where}.collectives.{name}: latency_s and latency_per_doubling_s must be >= 0, "
                             "bus_bytes_per_s > 0 and max_measured_group >= 1")
    return OpModel(engine=str(data.get("engine", "")), forms=forms, collectives=collectives,
                   source=str(data.get("source", "")))


def op_model_to_mapping(model: OpModel) -> dict:
    return {
        "engine": model.engine,
        "source": model.source,
        "forms": {name: {"fixed_s": f.fixed_s, "hbm_efficiency": f.hbm_efficiency,
                         "flop_efficiency": f.flop_efficiency, "correction": _correction_to(f.correction),
                         "source": f.source} for name, f in model.forms.items()},
        "collectives": {name: {"latency_s": c.latency_s, "latency_per_doubling_s": c.latency_per_doubling_s,
                               "bus_bytes_per_s": c.bus_bytes_per_s, "max_measured_group": c.max_measured_group,
                               "correction": _correction_to(c.correction), "source": c.source}
                        for name, c in model.collectives.items()},
    }


def missing_eplb_form(model: OpModel) -> str | None:
    """The balanced-routing form a file with MoE forms lacks (a fit from before EPLB was read at balanced
    routing: ``moe_eplb.<dtype>`` for its widest ``moe.<dtype>``), or None."""
    moe = [k.split(".", 1)[1] for k in model.forms if k.startswith("moe.")]
    if not moe or any(k.startswith("moe_eplb.") for k in model.forms):
        return None
    return f"moe_eplb.{'bf16' if 'bf16' in moe else sorted(moe)[0]}"
