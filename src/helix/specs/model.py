"""Model specs: dense GQA or MLA attention, dense FFN or MoE, and their derived sizes.

Public fields are descriptive (paper symbol in the comment). Derived sizes are properties, so a
spec is only its config. Presets live in ``presets/models/*.yaml``; any Hugging Face
``config.json`` of a Llama or DeepSeek-V3 model loads too (``load_model(path)``).

References: paper App. A (GQA KV and weight terms); DeepSeek-V3 config and the absorbed MLA form
([S17], [S15]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helix.errors import HelixInputError
from helix.specs.fields import as_number, check_keys, parse_nested, read_text, read_yaml, split_value

PRESET_DIR = Path(__file__).parent / "presets" / "models"

_INT_FIELDS = (
    "num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "ffn_dim", "vocab_size",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
    "num_experts", "experts_per_token", "expert_ffn_dim", "num_shared_experts", "num_dense_layers",
    "num_expert_groups", "topk_expert_groups",
)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    num_layers: int  # L
    hidden_dim: int  # H (model width; for GQA = Q x Hsz)
    num_query_heads: int  # Q
    num_kv_heads: int  # K (for MLA: the config's nominal value; the cache holds one latent head)
    head_dim: int  # Hsz (GQA head size; MLA: qk_nope + qk_rope)
    ffn_dim: int  # F (dense SwiGLU intermediate size)
    vocab_size: int  # V
    attention: str = "gqa"  # "gqa" or "mla"
    # MLA (DeepSeek-V2/V3): 0 where unused
    q_lora_rank: int = 0
    kv_lora_rank: int = 0  # d_c
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0  # d_rope
    v_head_dim: int = 0
    # MoE: num_experts == 0 means a dense model
    num_experts: int = 0  # E
    experts_per_token: int = 0  # k
    expert_ffn_dim: int = 0  # Fe
    num_shared_experts: int = 0
    num_dense_layers: int = 0  # leading dense layers (first_k_dense_replace)
    num_expert_groups: int = 1
    topk_expert_groups: int = 1
    source: str = ""

    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        for f in _INT_FIELDS:
            as_number(f"{where}.{f}", getattr(self, f), integer=True, minimum=0)
        for f in ("num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "vocab_size"):
            as_number(f"{where}.{f}", getattr(self, f), integer=True, minimum=0, strict=True)
        if self.attention not in ("gqa", "mla"):
            raise HelixInputError(f"{where}.attention", f"must be 'gqa' or 'mla', got {self.attention!r}")
        if self.attention == "gqa" and self.num_query_heads % self.num_kv_heads:
            raise HelixInputError(f"{where}.num_kv_heads",
                                  f"must divide num_query_heads ({self.num_query_heads}), got {self.num_kv_heads}")
        if self.attention == "mla":
            for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                as_number(f"{where}.{f}", getattr(self, f), integer=True, strict=True)
        if self.num_experts:
            for f in ("experts_per_token", "expert_ffn_dim"):
                as_number(f"{where}.{f}", getattr(self, f), integer=True, strict=True)
            if self.experts_per_token > self.num_experts:
                raise HelixInputError(f"{where}.experts_per_token",
                                      f"must be <= num_experts ({self.num_experts}), got {self.experts_per_token}")
            if self.num_dense_layers > self.num_layers:
                raise HelixInputError(f"{where}.num_dense_layers", f"must be <= num_layers ({self.num_layers})")
        elif self.ffn_dim <= 0:
            raise HelixInputError(f"{where}.ffn_dim", "must be > 0 for a dense model")

    # ---- kinds
    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def num_dense_ffn_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    # ---- attention geometry
    @property
    def cache_heads(self) -> int:
        """KV heads the cache holds: K for GQA, one shared latent head for MLA."""
        return 1 if self.is_mla else self.num_kv_heads

    @property
    def kv_elements_per_token_per_cache_head(self) -> int:
        """GQA: K and V of one head (2 Hsz); MLA: latent + decoupled RoPE key (d_c + d_rope)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.head_dim

    @property
    def attention_value_dim(self) -> int:
        """Width per head of the attention output (the all-to-all exchanges values after W_UV for MLA)."""
        return self.v_head_dim if self.is_mla else self.head_dim

    @property
    def attention_flops_per_cached_token_per_head(self) -> int:
        """FLOPs of one query head against one cached token: QK^T plus PV.

        GQA: 2 Hsz + 2 Hsz. MLA, absorbed: 2 (d_c + d_rope) + 2 d_c (FlashMLA's decode FLOP count [S15]).
        """
        if self.is_mla:
            return 2 * (self.kv_lora_rank + self.qk_rope_head_dim) + 2 * self.kv_lora_rank
        return 4 * self.head_dim

    # ---- parameter counts (per layer)
    @property
    def attention_replicated_params(self) -> int:
        """Weights every attention rank holds whole (MLA down-projections shared by all heads)."""
        if self.is_mla:
            q_down = self.hidden_dim * self.q_lora_rank
            kv_down = self.hidden_dim * (self.kv_lora_rank + self.qk_rope_head_dim)
            return q_down + kv_down
        return 0

    @property
    def attention_query_head_params(self) -> int:
        """Pre-attention weights split over query heads by TPA (GQA W_Q; MLA W_UQ and W_UK, W_UV)."""
        heads = self.num_query_heads
        if self.is_mla:
            q_rank = self.q_lora_rank or self.hidden_dim
            q_up = q_rank * heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
            kv_up = self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)
            return q_up + kv_up
        return self.hidden_dim * heads * self.head_dim

    @property
    def attention_kv_head_params(self) -> int:
        """GQA W_K and W_V of one KV head (2 H Hsz); split by KV head, so ceil(K/TPA) per rank."""
        return 0 if self.is_mla else 2 * self.hidden_dim * self.head_dim

    @property
    def o_projection_params(self) -> int:
        return self.num_query_heads * self.attention_value_dim * self.hidden_dim

    @property
    def attention_params(self) -> int:
        kv = 0 if self.is_mla else self.num_kv_heads * self.attention_kv_head_params
        return self.attention_replicated_params + self.attention_query_head_params + kv + self.o_projection_params

    @property
    def dense_ffn_params(self) -> int:
        return 3 * self.hidden_dim * self.ffn_dim  # SwiGLU: gate, up, down [paper App. A]

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden_dim * self.expert_ffn_dim

    @property
    def router_params(self) -> int:
        return self.hidden_dim * self.num_experts

    @property
    def total_params(self) -> int:
        moe = self.num_experts * self.expert_params + self.num_shared_experts * self.expert_params
        moe += self.router_params
        return (self.num_layers * self.attention_params + self.num_dense_ffn_layers * self.dense_ffn_params
                + self.num_moe_layers * moe + 2 * self.vocab_size * self.hidden_dim)

    def kv_cache_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """KV bytes one cached token costs over all layers, without duplication."""
        return self.num_layers * self.cache_heads * self.kv_elements_per_token_per_cache_head * kv_bytes_per_element


# ---------------------------------------------------------------- loading

_REQUIRED = {"name", "num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "vocab_size"}
_OPTIONAL = set(ModelSpec.__slots__) - _REQUIRED - {"source"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _from_mapping(where: str, data: dict[str, Any]) -> ModelSpec:
    data = dict(data)
    source = data.pop("source", "")
    data.pop("notes", None)
    check_keys(where, data, _REQUIRED, _OPTIONAL)
    values = {k: split_value(where, k, v)[0] for k, v in data.items()}
    for k in _INT_FIELDS:
        if k in values:
            values[k] = as_number(f"{where}.{k}", values[k], integer=True)
    return ModelSpec(**values, source=str(source))


def from_hf_config(path: Path) -> ModelSpec:
    """Build a spec from a Hugging Face ``config.json`` (model_type llama or deepseek_v3)."""
    where = path.name
    text = read_text(path, "--model")
    try:
        cfg = parse_nested(json.loads, text, path, "--model", "JSON")
    except json.JSONDecodeError as exc:
        raise HelixInputError(where, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise HelixInputError(where, "must hold a JSON object")
    kind = cfg.get("model_type")
    supported = ("llama", "mistral", "qwen2", "deepseek_v2", "deepseek_v3")
    if kind not in supported:
        raise HelixInputError(f"{where}.model_type", f"unsupported {kind!r}; allowed: {', '.join(supported)}")

    def get(key: str, default: Any = None) -> Any:
        if key in cfg and cfg[key] is not None:
            if isinstance(cfg[key], str):  # JSON types its numbers: "32" is a mistake, not YAML's 8.0e12 quirk
                raise HelixInputError(f"{where}.{key}", f"must be a JSON number, got the string {cfg[key]!r}")
            return cfg[key]
        if default is None:
            raise HelixInputError(f"{where}.{key}", f"missing (required for model_type {kind!r})")
        return default

    def num(key: str, default: Any = None) -> int:
        """An integer field checked before any arithmetic uses it."""
        return as_number(f"{where}.{key}", get(key, default), integer=True)

    name = str(cfg.get("_name_or_path") or path.stem.replace(".config", ""))
    common = dict(
        name=name,
        num_layers=get("num_hidden_layers"),
        hidden_dim=get("hidden_size"),
        num_query_heads=get("num_attention_heads"),
        vocab_size=get("vocab_size"),
        ffn_dim=get("intermediate_size"),
        source=f"Hugging Face config.json ({path})",
    )
    if kind in ("llama", "mistral", "qwen2"):
        heads = num("num_attention_heads")
        if heads < 1:
            raise HelixInputError(f"{where}.num_attention_heads", f"must be >= 1, got {heads}")
        common.update(num_kv_heads=get("num_key_value_heads", heads),
                      head_dim=get("head_dim", num("hidden_size") // heads))
        spec_fields = common
    else:  # deepseek_v2 / deepseek_v3
        spec_fields = dict(
            common,
            attention="mla",
            num_kv_heads=get("num_key_value_heads", get("num_attention_heads")),
            head_dim=num("qk_nope_head_dim") + num("qk_rope_head_dim"),
            q_lora_rank=get("q_lora_rank", 0),
            kv_lora_rank=get("kv_lora_rank"),
            qk_nope_head_dim=get("qk_nope_head_dim"),
            qk_rope_head_dim=get("qk_rope_head_dim"),
            v_head_dim=get("v_head_dim"),
            num_experts=get("n_routed_experts", 0),
            experts_per_token=get("num_experts_per_tok", 0),
            expert_ffn_dim=get("moe_intermediate_size", 0),
            num_shared_experts=get("n_shared_experts", 0),
            num_dense_layers=get("first_k_dense_replace", 0),
            num_expert_groups=get("n_group", 1),
            topk_expert_groups=get("topk_group", 1),
        )
    for k, v in spec_fields.items():
        if k in _INT_FIELDS:
            spec_fields[k] = as_number(f"{where}.{k}", v, integer=True)
    return ModelSpec(**spec_fields)


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A preset name (``helix models``), a YAML spec file, or a Hugging Face ``config.json``."""
    text = str(name_or_path)
    if text in preset_names():
        path = PRESET_DIR / f"{text}.yaml"
        return _from_mapping(f"model {text!r}", read_yaml(path, "--model"))
    path = Path(text)
    if path.suffix == ".json" and path.exists():
        return from_hf_config(path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return _from_mapping(path.name, read_yaml(path, "--model"))
    raise HelixInputError("--model", f"unknown model {text!r}; allowed: {', '.join(preset_names())}, "
                          "or a path to a config.json / .yaml file")
