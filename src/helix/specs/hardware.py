"""Hardware specs: compute, memory, the scale-up fabric, collective latencies and efficiency factors.

Every number in a built-in preset carries its source; empirical factors (achieved fractions of
peak, latencies) are marked ``empirical: true``. A user YAML may give bare values.
Units are SI: bytes, seconds, bytes/s, FLOP/s. Link bandwidth is per direction.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from helix.cost.optime import OpModel, missing_eplb_form, op_model_from_mapping
from helix.errors import HelixInputError
from helix.specs.fields import as_number, check_keys, parse_nested, read_text, read_yaml, split_value
from helix.specs.networks import check_network, networks

PRESET_DIR = Path(__file__).parent / "presets" / "hardware"


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    name: str
    peak_flops_per_s_fp4: float  # dense tensor-core peak; 0 = no FP4 units (runs at the FP8 rate)
    peak_flops_per_s_fp8: float
    peak_flops_per_s_bf16: float
    hbm_capacity_bytes: float
    hbm_bytes_per_s: float  # MemBW
    scale_up_domain_gpus: int  # GPUs in one NVLink domain
    link_bytes_per_s_per_direction: float  # NVLink, per GPU, per direction
    scale_out_bytes_per_s_per_direction: float  # per GPU, beyond the scale-up domain
    # empirical factors
    hbm_usable_fraction: float  # of capacity left for weights + KV (runtime, activations, fragmentation)
    hbm_efficiency: float  # achieved / peak HBM bandwidth for streaming kernels
    flop_efficiency: float  # achieved / peak tensor FLOP/s
    link_efficiency: float  # achieved / spec link bandwidth for bulk collective traffic
    kernel_launch_s: float  # fixed cost added to every op (launch + tail), with CUDA graphs
    sync_latency_s: float  # one synchronisation step through peer memory (one-shot AR, direct a2a/AG, p2p)
    ring_base_latency_s: float  # NCCL ring: fixed part
    ring_hop_latency_s: float  # NCCL ring: per step
    nvls_latency_s: float  # NVLink SHARP all-reduce; 0 = not available
    scale_out_latency_s: float  # extra latency per collective that leaves the scale-up domain
    step_overhead_s: float = 0.0  # host/framework work once per decode step outside the layer ops
    # fraction of the shorter of (compute, communication) hidden when both are issued at once (HOP-B and
    # the TP baseline's pipeline, helix.cost.overlap); 1 = the paper's perfect overlap, 0 = none
    comm_overlap_efficiency: float = 1.0
    # two-batch overlap: the share of a MoE dispatch / combine (DeepEP low-latency) that runs on the SMs (its
    # send and receive kernels on the compute stream), which the other micro-batch's compute cannot hide;
    # the rest is RDMA in flight with the SMs free (helix.step_overlap); 0 = all of it hides
    moe_dispatch_sm_fraction: float = 0.0
    moe_combine_sm_fraction: float = 0.0
    # all-reduce algorithms the collective library runs (helix.cost.collectives picks the cheapest);
    # None = every one the hardware has: ring, one_shot, two_shot, and nvls where nvls_latency_s > 0
    all_reduce_algorithms: tuple[str, ...] | None = None
    # beyond the scale-up domain: extra collective latency per doubling of the group past the domain
    scale_out_latency_per_doubling_s: float = 0.0
    # fitted collective bandwidths x this factor (a GPU whose links differ from the one measured: H800 vs H100)
    collective_bandwidth_scale: float = 1.0
    # the same for a form measured across nodes (DeepEP's low-latency kernels), at groups past the scale-up
    # domain: those run on the NIC, so the factor is this GPU's NIC over the measured system's, not its links'
    scale_out_collective_bandwidth_scale: float = 1.0
    # engine -> fitted op-model file (relative to the preset directory); the chosen one is loaded as op_model
    op_models: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    engine: str = ""  # the engine whose measured kernel tables time the ops ("" = the plain roofline)
    # the named scale-out network (helix.specs.networks; "" = unnamed, a user profile's own bandwidth)
    scale_out_network: str = ""
    op_model: OpModel | None = field(default=None, compare=False, hash=False)
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    empirical: frozenset[str] = field(default_factory=frozenset, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"hardware {self.name!r}"
        for f in NUMBER_FIELDS:
            strict = f in _STRICTLY_POSITIVE
            # a rate (bytes/s, FLOP/s) below 1e3 per second is no device, and 1e-300 would make TTL infinite
            floor = RATE_FLOOR_PER_S if f.endswith("_per_s") and strict else 0.0
            as_number(f"{where}.{f}", getattr(self, f), strict=strict, integer=(f == "scale_up_domain_gpus"),
                      minimum=floor)
        for f in UNIT_FIELDS:
            as_number(f"{where}.{f}", getattr(self, f), strict=f not in ZERO_ALLOWED, maximum=1.0)
        algorithms = self.all_reduce_algorithms
        if algorithms is None:
            algorithms = ALL_REDUCE_ALGORITHMS if self.nvls_latency_s > 0 else ALL_REDUCE_ALGORITHMS[:-1]
        object.__setattr__(self, "all_reduce_algorithms",
                           check_all_reduce_algorithms(f"{where}.all_reduce_algorithms", algorithms))

    def peak_flops_per_s(self, compute_class: str) -> float:
        """Peak for a compute class; formats without their own units run at the next wider rate."""
        if compute_class == "fp4" and self.peak_flops_per_s_fp4 > 0:
            return self.peak_flops_per_s_fp4
        if compute_class in ("fp4", "fp8") and self.peak_flops_per_s_fp8 > 0:
            return self.peak_flops_per_s_fp8
        return self.peak_flops_per_s_bf16

    @property
    def usable_hbm_bytes(self) -> float:
        return self.hbm_capacity_bytes * self.hbm_usable_fraction


ALL_REDUCE_ALGORITHMS = ("ring", "one_shot", "two_shot", "nvls")
NUMBER_FIELDS = tuple(f.name for f in fields(HardwareSpec)
                      if f.name not in ("name", "description", "sources", "empirical", "all_reduce_algorithms",
                                        "op_models", "engine", "op_model", "scale_out_network"))
# Fields a user YAML may leave out (defaults: no per-step overhead, every all-reduce algorithm the
# hardware has, perfect compute-communication overlap, no exchange on the SMs, collective forms measured
# on this GPU's own links); built-in presets and calibrated profiles give them with a source.
OPTIONAL_FIELDS = ("step_overhead_s", "all_reduce_algorithms", "comm_overlap_efficiency", "moe_dispatch_sm_fraction",
                   "moe_combine_sm_fraction", "scale_out_latency_per_doubling_s", "collective_bandwidth_scale",
                   "scale_out_collective_bandwidth_scale", "op_models", "scale_out_network")
# Fractions: at most 1 (> 0 but for the overlap fractions, where 0 = no overlap or nothing on the SMs).
UNIT_FIELDS = ("hbm_usable_fraction", "hbm_efficiency", "flop_efficiency", "link_efficiency",
               "comm_overlap_efficiency", "moe_dispatch_sm_fraction", "moe_combine_sm_fraction")
ZERO_ALLOWED = ("comm_overlap_efficiency", "moe_dispatch_sm_fraction", "moe_combine_sm_fraction")
SOURCED_FIELDS = NUMBER_FIELDS + ("all_reduce_algorithms", "scale_out_network")
ENGINES = ("trtllm", "sglang", "vllm")
NO_ENGINE = "none"  # the plain roofline with the preset's fixed costs, whatever op models the preset has
DEFAULT_ENGINE = "trtllm"  # TensorRT-LLM: the paper's stack and the engine that ships Helix


def check_all_reduce_algorithms(where: str, value: Any) -> tuple[str, ...]:
    """A non-empty list of known algorithm names (nvls counts only where nvls_latency_s > 0)."""
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise HelixInputError(where, f"must be a non-empty list among {', '.join(ALL_REDUCE_ALGORITHMS)}, "
                              f"got {value!r}")
    names = tuple(str(v) for v in value)
    bad = [n for n in names if n not in ALL_REDUCE_ALGORITHMS]
    if bad:
        raise HelixInputError(where, f"unknown algorithm {bad[0]!r}; allowed: {', '.join(ALL_REDUCE_ALGORITHMS)}")
    if len(set(names)) != len(names):
        raise HelixInputError(where, f"lists an algorithm twice: {list(names)}")
    return names

RATE_FLOOR_PER_S = 1e3
_STRICTLY_POSITIVE = {"collective_bandwidth_scale", "scale_out_collective_bandwidth_scale", "peak_flops_per_s_bf16",
                      "hbm_capacity_bytes", "hbm_bytes_per_s", "scale_up_domain_gpus", "link_bytes_per_s_per_direction",
                      "scale_out_bytes_per_s_per_direction"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def hardware_from_mapping(where: str, data: dict[str, Any]) -> HardwareSpec:
    data = dict(data)
    name = str(data.pop("name", where))
    description = str(data.pop("description", ""))
    check_keys(where, data, set(NUMBER_FIELDS) - set(OPTIONAL_FIELDS), set(OPTIONAL_FIELDS))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    empirical: set[str] = set()
    for key, raw in data.items():
        value, source, is_empirical = split_value(where, key, raw)
        if key == "all_reduce_algorithms":
            values[key] = check_all_reduce_algorithms(f"{where}.{key}", value)
        elif key == "op_models":
            values[key] = _check_op_models(f"{where}.{key}", value)
        elif key == "scale_out_network":
            values[key] = check_network(f"{where}.{key}", value)
        else:
            values[key] = as_number(f"{where}.{key}", value, integer=(key == "scale_up_domain_gpus"),
                                    strict=key in _STRICTLY_POSITIVE, maximum=1.0 if key in UNIT_FIELDS else None)
        if source:
            sources[key] = str(source)
        if is_empirical:
            empirical.add(key)
    _check_network_bandwidth(where, values)
    return HardwareSpec(name=name, description=description, sources=sources, empirical=frozenset(empirical),
                        **values)


def _check_network_bandwidth(where: str, values: dict[str, Any]) -> None:
    """A preset that names its scale-out network gives that network's bandwidth, never another one."""
    name = values.get("scale_out_network")
    if name:
        bandwidth = networks()[name][0]
        if values["scale_out_bytes_per_s_per_direction"] != bandwidth:
            raise HelixInputError(f"{where}.scale_out_bytes_per_s_per_direction",
                                  f"is {values['scale_out_bytes_per_s_per_direction']:.4g} but scale_out_network "
                                  f"{name!r} carries {bandwidth:.4g} bytes/s per GPU per direction; make them agree")


def _check_op_models(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise HelixInputError(where, f"must map engine names ({', '.join(ENGINES)}) to op-model files, got {value!r}")
    bad = [e for e in value if e not in ENGINES]
    if bad:
        raise HelixInputError(where, f"unknown engine {bad[0]!r}; allowed: {', '.join(ENGINES)}")
    return {str(k): str(v) for k, v in value.items()}


def _with_op_model(hw: HardwareSpec, base_dir: Path, engine: str | None) -> HardwareSpec:
    """The spec with the chosen engine's fitted op model loaded (None: the default engine, if any)."""
    if engine == NO_ENGINE:
        return hw
    if not hw.op_models:
        if engine:
            raise HelixInputError("--engine", f"hardware {hw.name!r} has no measured op model (it uses the plain "
                                  "roofline); drop --engine or pick a preset listed by `helix hardware`")
        return hw
    chosen = engine or (DEFAULT_ENGINE if DEFAULT_ENGINE in hw.op_models else sorted(hw.op_models)[0])
    if chosen not in hw.op_models:
        raise HelixInputError("--engine", f"hardware {hw.name!r} has no op model for {chosen!r}; allowed: "
                              f"{', '.join(sorted(hw.op_models))}")
    path = (base_dir / hw.op_models[chosen]).resolve()
    if not path.is_file() and not Path(hw.op_models[chosen]).is_absolute():
        # a user's copy of a preset keeps pointing at the shipped fit unless it ships its own file
        path = (PRESET_DIR / hw.op_models[chosen]).resolve()
    stat = path.stat() if path.is_file() else None
    model = _read_op_model(str(path), stat.st_mtime_ns if stat else 0)
    return replace(hw, engine=chosen, op_model=model)


@functools.lru_cache(maxsize=32)
def _read_op_model(path: str, mtime_ns: int) -> OpModel:
    """Parse one op-model file once per modification (experiments load the same preset many times)."""
    del mtime_ns  # part of the cache key only
    if path.endswith(".json"):
        text = read_text(Path(path), "--hardware")
        try:
            data = parse_nested(json.loads, text, Path(path), "--hardware", "JSON")
        except ValueError as exc:
            raise HelixInputError("--hardware", f"{path!r} is not valid JSON ({exc})") from None
    else:
        data = read_yaml(Path(path), "--hardware")
    if not isinstance(data, dict):
        raise HelixInputError("--hardware", f"{path!r} must hold a mapping")
    data = {k: v for k, v in data.items() if k not in ("generated_by", "hardware")}
    try:
        model = op_model_from_mapping(Path(path).name, data)
    except ValueError as exc:
        raise HelixInputError("--hardware", str(exc)) from None
    missing = missing_eplb_form(model)
    if missing:
        raise HelixInputError("--hardware", f"op model {path!r} has MoE forms but no {missing!r} (MoE at balanced "
                              "routing, read with redundant experts); refit it with `helix calibrate --from-perf-db`")
    return model


def load_hardware(name_or_path: str | Path, engine: str | None = None) -> HardwareSpec:
    """A preset name (``helix hardware``) or a path to a YAML file with every field; ``engine`` picks
    which engine's measured kernel tables time the ops (default: TensorRT-LLM where the preset has it)."""
    if engine is not None and engine not in (*ENGINES, NO_ENGINE):
        raise HelixInputError("--engine", f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}, {NO_ENGINE}")
    text = str(name_or_path)
    if text in preset_names():
        hw = hardware_from_mapping(f"hardware {text!r}", read_yaml(PRESET_DIR / f"{text}.yaml", "--hardware"))
        return _with_op_model(hw, PRESET_DIR, engine)
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        return _with_op_model(hardware_from_mapping(path.name, read_yaml(path, "--hardware")), path.parent, engine)
    raise HelixInputError("--hardware", f"unknown hardware {text!r}; allowed: {', '.join(preset_names())}, "
                          "or a path to a .yaml file")
