"""Scale-out networks (``presets/networks.yaml``): the per-GPU bandwidth a collective's across-domain
phase runs at (helix.cost.collectives), named so a user can swap it (``--scale-out``)."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from helix.errors import HelixInputError
from helix.specs.fields import as_number, read_yaml, split_value

NETWORKS_FILE = Path(__file__).parent / "presets" / "networks.yaml"


@functools.lru_cache(maxsize=1)
def networks() -> dict[str, tuple[float, str, str]]:
    """{name: (bytes/s per GPU per direction, source, description)}."""
    data = read_yaml(NETWORKS_FILE, "--scale-out")
    out = {}
    for name, entry in data.items():
        value, source, _ = split_value(f"network {name!r}", "bytes_per_s_per_direction",
                                       entry["bytes_per_s_per_direction"])
        out[str(name)] = (as_number(f"network {name!r}.bytes_per_s_per_direction", value, strict=True),
                          str(source or ""), str(entry.get("description", "")))
    return out


def check_network(where: str, name: object) -> str:
    if not isinstance(name, str) or name not in networks():
        raise HelixInputError(where, f"unknown scale-out network {name!r}; allowed: {', '.join(networks())}")
    return name


def with_scale_out(hw, name: str | None):
    """The hardware with its GPUs on the named network (None: as the preset says)."""
    if name is None:
        return hw
    bandwidth, source, _ = networks()[check_network("--scale-out", name)]
    sources = dict(hw.sources, scale_out_bytes_per_s_per_direction=source, scale_out_network="--scale-out")
    return replace(hw, scale_out_network=name, scale_out_bytes_per_s_per_direction=bandwidth, sources=sources)
