"""Fake quantisers for the precision study: round onto the exact FP8 E4M3 / FP4 E2M1 grids and back to fp32.

Every function returns the *dequantised* fp32 tensor, the values a kernel reading the quantised cache or
payload would compute with; the error study (``helix.runtime.precision_error``) feeds them to the runtime's
own attention and combine.

Element grids (round to nearest, ties to even, saturating at the largest finite value):

- E4M3 (``float8_e4m3fn``, OCP 8-bit FP spec): exponent bias 7, 3 mantissa bits, subnormal quantum 2^-9,
  largest finite 448 (the all-ones pattern is NaN, so 480 is not a value);
- E2M1 (FP4, OCP MX spec v1.0 §5.3.3): bias 1, 1 mantissa bit, values {0, 0.5, 1, 1.5, 2, 3, 4, 6}.

Scaled formats (``KV_FORMATS``):

- ``fp8_tensor``: one fp32 scale per tensor, amax / 448 (amax of the whole cache given by the caller);
- ``fp8_row``: one fp32 scale per row of ``ROW_ELEMENTS`` = 128 elements, i.e. per token per KV head at
  head_dim 128 (the per-token-per-head scale of FP8 KV caches; also the partial-output payload's scale);
- ``nvfp4``: E2M1 values in 16-element blocks, one E4M3 block scale, one fp32 per-tensor scale
  amax / (448 · 6), so block scales use E4M3's whole range (NVIDIA, "Introducing NVFP4 for efficient and
  accurate low-precision inference" [S25]);
- ``mxfp4``: E2M1 values in 32-element blocks, one E8M0 (power of two) scale 2^(floor(log2 amax) - 2), where
  2 is E2M1's largest exponent; elements beyond 6 after scaling saturate [OCP MX spec v1.0 §6.3];
- ``bf16``: round to nearest even onto bfloat16; ``fp32``: unchanged (the unquantised run).
"""

from __future__ import annotations

import torch

from helix.errors import HelixInputError
from helix.runtime.precision_spec import KV_FORMATS

E4M3_MAX = 448.0
E2M1_MAX = 6.0
E2M1_MAX_EXPONENT = 2  # 6 = 1.5 · 2^2
ROW_ELEMENTS = 128
NVFP4_BLOCK = 16
MXFP4_BLOCK = 32
E8M0_EXPONENT_RANGE = (-127, 127)  # the E8M0 scale's finite exponents (bias 127; 0xFF is NaN)

NEEDS_TENSOR_AMAX = ("fp8_tensor", "nvfp4")


def round_to_minifloat(x: torch.Tensor, mantissa_bits: int, min_exponent: int, max_value: float) -> torch.Tensor:
    """x rounded to the nearest value of a sign-magnitude float grid (ties to even), saturating at ±max_value.

    Below 2^min_exponent (the smallest normal) the spacing stays 2^(min_exponent - mantissa_bits): the
    subnormals. Dividing by a power of two is exact, so torch.round (half to even) rounds on the grid.
    """
    a = x.abs()
    _, e = torch.frexp(a)  # a = m · 2^e, m in [0.5, 1): floor(log2 a) = e - 1 (0 gives e = 0, clamped below)
    exponent = torch.clamp(e - 1, min=min_exponent)
    quantum = torch.ldexp(torch.ones_like(a), exponent - mantissa_bits)
    return torch.copysign(torch.clamp(torch.round(a / quantum) * quantum, max=max_value), x)


def round_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Onto the E4M3 grid: min normal 2^-6, 3 mantissa bits, saturating at 448."""
    return round_to_minifloat(x, 3, -6, E4M3_MAX)


def round_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Onto the E2M1 grid: min normal 2^0, 1 mantissa bit, saturating at 6."""
    return round_to_minifloat(x, 1, 0, E2M1_MAX)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    if x.shape[-1] % block:
        raise HelixInputError("head_dim", f"{x.shape[-1]} is not a multiple of the {block}-element block")
    return x.reshape(*x.shape[:-1], x.shape[-1] // block, block)


def _safe(scale: torch.Tensor) -> torch.Tensor:
    # an all-zero block has scale 0: its elements are 0 whatever we divide by, so divide by 1 instead of 0
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def fp8_tensor(x: torch.Tensor, amax: float) -> torch.Tensor:
    """E4M3 with one fp32 scale for the whole tensor: amax maps to 448."""
    scale = amax / E4M3_MAX if amax > 0 else 1.0
    return round_e4m3(x / scale) * scale


def fp8_row(x: torch.Tensor, block: int = ROW_ELEMENTS) -> torch.Tensor:
    """E4M3 with one fp32 scale per ``block`` elements of the last axis (amax of the block maps to 448)."""
    b = _blocks(x, block)
    scale = _safe(b.abs().amax(dim=-1, keepdim=True) / E4M3_MAX)
    return (round_e4m3(b / scale) * scale).reshape(x.shape)


def nvfp4_block_scales(x: torch.Tensor, amax: float) -> tuple[torch.Tensor, float]:
    """NVFP4's two scales: (E4M3 block scales [..., n/16, 1], the fp32 tensor scale amax / (448 · 6))."""
    tensor_scale = amax / (E4M3_MAX * E2M1_MAX) if amax > 0 else 1.0
    b = _blocks(x, NVFP4_BLOCK)
    block_scale = round_e4m3(b.abs().amax(dim=-1, keepdim=True) / (E2M1_MAX * tensor_scale))
    return block_scale, tensor_scale


def nvfp4(x: torch.Tensor, amax: float) -> torch.Tensor:
    """E2M1 per 16 elements × an E4M3 block scale × an fp32 tensor scale (NVIDIA's NVFP4)."""
    block_scale, tensor_scale = nvfp4_block_scales(x, amax)
    scale = _safe(block_scale * tensor_scale)
    return (round_e2m1(_blocks(x, NVFP4_BLOCK) / scale) * scale).reshape(x.shape)


def mxfp4(x: torch.Tensor) -> torch.Tensor:
    """E2M1 per 32 elements × an E8M0 scale 2^(floor(log2 amax) - 2) (OCP MX v1.0's MXFP4)."""
    b = _blocks(x, MXFP4_BLOCK)
    amax = b.abs().amax(dim=-1, keepdim=True)
    _, e = torch.frexp(amax)  # floor(log2 amax) = e - 1
    shared = torch.clamp(e - 1 - E2M1_MAX_EXPONENT, *E8M0_EXPONENT_RANGE)
    scale = torch.ldexp(torch.ones_like(amax), shared)
    return (round_e2m1(b / scale) * scale).reshape(x.shape)


def bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(x.dtype)


def quantise(x: torch.Tensor, fmt: str, amax: float | None = None) -> torch.Tensor:
    """``x`` stored in ``fmt`` (KV_FORMATS) and read back as fp32; ``amax`` is the whole tensor's max |x|
    for the formats with a per-tensor scale (NEEDS_TENSOR_AMAX)."""
    if fmt == "fp32":
        return x
    if fmt == "bf16":
        return bf16(x)
    if fmt == "fp8_row":
        return fp8_row(x)
    if fmt == "mxfp4":
        return mxfp4(x)
    if fmt in NEEDS_TENSOR_AMAX:
        if amax is None:
            raise HelixInputError("amax", f"{fmt} needs the tensor's max |x| (its per-tensor scale)")
        return fp8_tensor(x, amax) if fmt == "fp8_tensor" else nvfp4(x, amax)
    raise HelixInputError("format", f"unknown format {fmt!r}; allowed: {', '.join(KV_FORMATS)}")
