"""Numeric formats and the precision of each tensor class.

Bytes per element include block scales (OCP MX and NVFP4 store one scale per block):
- fp4: 0.5 B, the paper's App. A accounting (no scales) [paper App. A];
- nvfp4: 4 bits + one FP8 (E4M3) scale per 16 elements = 4.5 bits [NVIDIA NVFP4 blog, via
  reference/hardware_models.md §4];
- mxfp4: 4 bits + one E8M0 scale per 32 elements = 4.25 bits [OCP MX spec v1.0];
- mxfp8: 8 bits + one E8M0 scale per 32 = 8.25 bits [OCP MX spec v1.0];
- fp8, bf16, fp16, fp32: 1, 2, 2, 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from helix.errors import HelixInputError

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp4": 0.5,
    "nvfp4": 4.5 / 8,
    "mxfp4": 4.25 / 8,
    "fp8": 1.0,
    "mxfp8": 8.25 / 8,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp32": 4.0,
}

# Which tensor-core peak a compute format runs at (block-scaled formats run at their element rate).
COMPUTE_CLASS: dict[str, str] = {
    "fp4": "fp4",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
    "fp8": "fp8",
    "mxfp8": "fp8",
    "bf16": "bf16",
    "fp16": "bf16",
    "fp32": "bf16",
}

TENSOR_CLASSES = ("attention_weights", "ffn_weights", "kv_cache", "communication", "compute")


def check_format(field: str, fmt: str) -> str:
    if fmt not in BYTES_PER_ELEMENT:
        raise HelixInputError(field, f"unknown format {fmt!r}; allowed: {', '.join(BYTES_PER_ELEMENT)}")
    return fmt


@dataclass(frozen=True, slots=True)
class PrecisionSpec:
    """Storage/transfer format per tensor class; the paper's setting is FP4 everywhere [paper §3.1]."""

    attention_weights: str = "fp4"
    ffn_weights: str = "fp4"
    kv_cache: str = "fp4"
    communication: str = "fp4"
    compute: str = "fp4"

    def __post_init__(self) -> None:
        for name in TENSOR_CLASSES:
            check_format(f"precision.{name}", getattr(self, name))

    @classmethod
    def uniform(cls, fmt: str) -> PrecisionSpec:
        check_format("precision", fmt)
        return cls(fmt, fmt, fmt, fmt, fmt)

    def bytes_of(self, tensor_class: str) -> float:
        return BYTES_PER_ELEMENT[getattr(self, tensor_class)]

    @property
    def compute_class(self) -> str:
        return COMPUTE_CLASS[self.compute]
