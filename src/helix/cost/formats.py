"""Numeric formats: bytes per element (block scales included) and the tensor-core rate each runs at.

Ground-level facts shared by the cost formulas and the precision spec (helix.specs.precision).

Bytes per element include block scales (OCP MX and NVFP4 store one scale per block):
- fp4: 0.5 B, the paper's App. A accounting (no scales) [paper App. A];
- nvfp4: 4 bits + one FP8 (E4M3) scale per 16 elements = 4.5 bits [NVIDIA NVFP4 blog [S25]];
- mxfp4: 4 bits + one E8M0 scale per 32 elements = 4.25 bits [OCP MX spec v1.0];
- mxfp8: 8 bits + one E8M0 scale per 32 = 8.25 bits [OCP MX spec v1.0]; also DeepEP's FP8 dispatch,
  1 B + one fp32 scale per 128 elements = 8.25 bits [DeepEP README [S14]];
- fp8_block: 8 bits + one fp32 scale per 128 x 128 weight block, DeepSeek-V3's checkpoint format
  [DeepSeek-V3 technical report §3.3.2];
- fp8, bf16, fp16, fp32: 1, 2, 2, 4 bytes.
"""

from __future__ import annotations

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp4": 0.5,
    "nvfp4": 4.5 / 8,
    "mxfp4": 4.25 / 8,
    "fp8": 1.0,
    "mxfp8": 8.25 / 8,
    "fp8_block": 1.0 + 4.0 / (128 * 128),
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
    "fp8_block": "fp8",
    "bf16": "bf16",
    "fp16": "bf16",
    "fp32": "bf16",
}
