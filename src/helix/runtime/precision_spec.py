"""What the precision study measures, checked on construction without torch (``helix precision`` validates
its flags here before it imports torch; the measurement is ``helix.runtime.precision_error``).

Format names (the quantisers are in ``helix.runtime.quantise``): KV cache ``fp32`` (unquantised), ``bf16``,
``fp8_tensor`` (E4M3, one fp32 scale per tensor), ``fp8_row`` (E4M3, one fp32 scale per 128-element row: per
token per KV head at head_dim 128), ``nvfp4`` (E2M1 × E4M3 per 16 × fp32 per tensor), ``mxfp4`` (E2M1 × E8M0
per 32); partial-output payloads ``fp32``, ``bf16``, ``fp8_row`` (one fp32 scale per head row) and ``nvfp4``
(the paper's "FP4 everywhere" read literally), the LSE always fp32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helix.errors import HelixInputError

KV_FORMATS = ("fp32", "bf16", "fp8_tensor", "fp8_row", "nvfp4", "mxfp4")
PAYLOAD_FORMATS = ("fp32", "bf16", "fp8_row", "nvfp4")
# Each 1M-token pass is ~1 s of quantisation per format on one core; past 2^24 tokens a seed takes minutes.
MAX_CONTEXT = 2**24
MAX_KVP = 1024


@dataclass(frozen=True, slots=True)
class SyntheticKV:
    """One KV head group: ``query_heads`` query heads of ``head_dim``; keys Student-t (4 degrees of freedom)
    with ``outlier_channels`` channels × ``outlier_scale``; values and queries standard normal."""

    head_dim: int = 128
    query_heads: int = 16  # Llama-405B: 128 query heads over 8 KV heads
    outlier_channels: int = 4
    outlier_scale: float = 20.0
    chunk_tokens: int = 32768  # 16 MB per fp32 tensor at head_dim 128: memory stays flat at any context

    def __post_init__(self) -> None:
        if self.head_dim < 32 or self.head_dim % 32:
            raise HelixInputError("head_dim", f"{self.head_dim}: a positive multiple of 32 (the MXFP4 block)")
        if self.query_heads < 1:
            raise HelixInputError("query_heads", f"{self.query_heads}: at least 1")
        if not 0 <= self.outlier_channels <= self.head_dim:
            raise HelixInputError("outlier_channels", f"{self.outlier_channels}: 0 to head_dim ({self.head_dim})")
        if not self.outlier_scale > 0:
            raise HelixInputError("outlier_scale", f"{self.outlier_scale}: positive")
        if self.chunk_tokens < 1:
            raise HelixInputError("chunk_tokens", f"{self.chunk_tokens}: at least 1")


def _check_names(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    for v in values:
        if v not in allowed:
            raise HelixInputError(name, f"unknown format {v!r}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class Study:
    """The sweep: every context × KV format × KVP × payload format × seed."""

    contexts: tuple[int, ...] = (4_000, 64_000, 1_000_000)
    kvps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    kv_formats: tuple[str, ...] = KV_FORMATS
    payload_formats: tuple[str, ...] = PAYLOAD_FORMATS
    seeds: tuple[int, ...] = (0, 1, 2)
    data: SyntheticKV = field(default_factory=SyntheticKV)

    def __post_init__(self) -> None:
        for name in ("contexts", "kvps", "kv_formats", "payload_formats", "seeds"):
            if not getattr(self, name):
                raise HelixInputError(name, "is empty; give at least one")
        _check_names("kv_formats", self.kv_formats, KV_FORMATS)
        _check_names("payload_formats", self.payload_formats, PAYLOAD_FORMATS)
        top = max(self.kvps)
        for k in self.kvps:
            if not 1 <= k <= MAX_KVP or top % k:
                raise HelixInputError("kvps", f"{k}: every KVP must be 1 to {MAX_KVP} and divide the largest ({top}), "
                                              "whose shards the smaller KVPs merge")
        for s in self.contexts:
            if not top <= s <= MAX_CONTEXT:
                raise HelixInputError("contexts", f"{s:,} tokens: from the largest KVP ({top}, one token per rank) "
                                                  f"to 2^24 = {MAX_CONTEXT:,}")
        if any(s < 0 for s in self.seeds):
            raise HelixInputError("seeds", "non-negative integers")
