"""Which numeric format each tensor class uses (formats and their sizes: helix.cost.formats)."""

from __future__ import annotations

from dataclasses import dataclass

from helix.cost.formats import BYTES_PER_ELEMENT, COMPUTE_CLASS  # noqa: F401  (re-exported)
from helix.errors import HelixInputError

# What each class is (the CLI's --<class>-precision flags). Stacks differ in exactly these choices:
# DeepSeek / SGLang run FP8 block-scaled weights and GEMMs, BF16 MLA math and KV cache, FP8 dispatch and
# BF16 combine, a BF16 router and LM head; the paper runs FP4 everywhere [paper §3.1].
TENSOR_CLASSES = ("attention_weights", "ffn_weights", "kv_cache", "communication", "compute", "attention_compute",
                  "moe_dispatch", "moe_combine", "router_weights", "embedding_weights")
TENSOR_CLASS_HELP = {
    "attention_weights": "QKV, MLA projections and O-projection weights",
    "ffn_weights": "dense FFN, routed and shared expert weights",
    "kv_cache": "the KV cache (and the attention kernel that reads it)",
    "communication": "payloads of the attention and FFN collectives (KVP partials, all-reduces, all-gathers)",
    "compute": "GEMM math: the tensor-core rate of every projection, FFN and expert GEMM",
    "attention_compute": "attention math: the tensor-core rate of QK^T and PV",
    "moe_dispatch": "DP+EP dispatch all-to-all payload (DeepEP: fp8 with 1x128 scales = mxfp8's 8.25 bits)",
    "moe_combine": "DP+EP combine all-to-all payload (DeepEP: bf16)",
    "router_weights": "the MoE router (gate) weights",
    "embedding_weights": "embedding and LM head weights",
}


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
    attention_compute: str = "fp4"
    moe_dispatch: str = "fp4"
    moe_combine: str = "fp4"
    router_weights: str = "fp4"
    embedding_weights: str = "fp4"

    def __post_init__(self) -> None:
        for name in TENSOR_CLASSES:
            check_format(f"precision.{name}", getattr(self, name))

    @classmethod
    def uniform(cls, fmt: str) -> PrecisionSpec:
        check_format("precision", fmt)
        return cls(**{c: fmt for c in TENSOR_CLASSES})

    def bytes_of(self, tensor_class: str) -> float:
        return BYTES_PER_ELEMENT[getattr(self, tensor_class)]

    @property
    def compute_class(self) -> str:
        """The tensor-core rate of GEMM math."""
        return COMPUTE_CLASS[self.compute]


FP4_FORMATS = ("fp4", "nvfp4", "mxfp4")


def resolve(uniform: str | None, per_class: dict[str, str], checkpoint: dict[str, str], hw) -> PrecisionSpec:
    """The CLI's precision: a default (FP8 on hardware without FP4 units, peak_flops_per_s_fp4 = 0: the
    Hopper presets; FP4 elsewhere, the paper's setting), then the checkpoint's weight formats (its
    quantization_config), then --precision, then --<class>-precision; the later wins. Naming an FP4 format
    in a flag on such hardware is an error; a checkpoint's MXFP4 weights stay (weight-only FP4 kernels
    read them on Hopper), and the library's PrecisionSpec() default stays FP4 everywhere."""
    if uniform is not None:
        check_format("precision", uniform)
    no_fp4 = hw.peak_flops_per_s_fp4 == 0
    if no_fp4:
        flags = {"--precision": uniform, **{f"--{tc.replace('_', '-')}-precision": f for tc, f in per_class.items()}}
        for flag, fmt in flags.items():
            if fmt in FP4_FORMATS:
                allowed = ", ".join(f for f in BYTES_PER_ELEMENT if f not in FP4_FORMATS)
                raise HelixInputError(flag, f"{fmt} needs FP4 tensor cores and {hw.name} has none "
                                      f"(peak_flops_per_s_fp4 = 0); allowed: {allowed}")
    values = dict.fromkeys(TENSOR_CLASSES, "fp8" if no_fp4 else "fp4")
    if uniform is None:
        values.update(checkpoint)
    else:
        values = dict.fromkeys(TENSOR_CLASSES, uniform)
    return PrecisionSpec(**{**values, **per_class})
