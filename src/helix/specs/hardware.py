"""Hardware specs: compute, memory, the scale-up fabric, collective latencies and efficiency factors.

Every number in a built-in preset carries its source; empirical factors (achieved fractions of
peak, latencies) are marked ``empirical: true``. A user YAML may give bare values.
Units are SI: bytes, seconds, bytes/s, FLOP/s. Link bandwidth is per direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from helix.errors import HelixInputError
from helix.specs.fields import as_number, check_keys, read_yaml, split_value

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
    # all-reduce algorithms the collective library runs (helix.cost.collectives picks the cheapest);
    # None = every one the hardware has: ring, one_shot, two_shot, and nvls where nvls_latency_s > 0
    all_reduce_algorithms: tuple[str, ...] | None = None
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    empirical: frozenset[str] = field(default_factory=frozenset, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"hardware {self.name!r}"
        for f in NUMBER_FIELDS:
            strict = f in _STRICTLY_POSITIVE
            as_number(f"{where}.{f}", getattr(self, f), strict=strict, integer=(f == "scale_up_domain_gpus"))
        for f in UNIT_FIELDS:
            as_number(f"{where}.{f}", getattr(self, f), strict=f != "comm_overlap_efficiency", maximum=1.0)
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
                      if f.name not in ("name", "description", "sources", "empirical", "all_reduce_algorithms"))
# Fields a user YAML may leave out (defaults: no per-step overhead, every all-reduce algorithm the
# hardware has, perfect compute-communication overlap); built-in presets and calibrated profiles give
# them with a source.
OPTIONAL_FIELDS = ("step_overhead_s", "all_reduce_algorithms", "comm_overlap_efficiency")
# Fractions: at most 1 (> 0 but for comm_overlap_efficiency, where 0 = no overlap).
UNIT_FIELDS = ("hbm_usable_fraction", "hbm_efficiency", "flop_efficiency", "link_efficiency",
               "comm_overlap_efficiency")
SOURCED_FIELDS = NUMBER_FIELDS + ("all_reduce_algorithms",)


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
_STRICTLY_POSITIVE = {"peak_flops_per_s_bf16", "hbm_capacity_bytes", "hbm_bytes_per_s", "scale_up_domain_gpus",
                      "link_bytes_per_s_per_direction", "scale_out_bytes_per_s_per_direction"}


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
        else:
            values[key] = as_number(f"{where}.{key}", value, integer=(key == "scale_up_domain_gpus"),
                                    strict=key in _STRICTLY_POSITIVE, maximum=1.0 if key in UNIT_FIELDS else None)
        if source:
            sources[key] = str(source)
        if is_empirical:
            empirical.add(key)
    return HardwareSpec(name=name, description=description, sources=sources, empirical=frozenset(empirical),
                        **values)


def load_hardware(name_or_path: str | Path) -> HardwareSpec:
    """A preset name (``helix hardware``) or a path to a YAML file with every field."""
    text = str(name_or_path)
    if text in preset_names():
        return hardware_from_mapping(f"hardware {text!r}", read_yaml(PRESET_DIR / f"{text}.yaml", "--hardware"))
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        return hardware_from_mapping(path.name, read_yaml(path, "--hardware"))
    raise HelixInputError("--hardware", f"unknown hardware {text!r}; allowed: {', '.join(preset_names())}, "
                          "or a path to a .yaml file")
