"""A model spec from a Hugging Face ``config.json``: Llama-family and DeepSeek-V2/V3/V3.2 configs.

Field names as transformers 5.24's configuration classes spell them (LlamaConfig, DeepseekV3Config,
DeepseekV32Config: ``index_n_heads``, ``index_head_dim``, ``index_topk`` for DSA's indexer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helix.errors import HelixInputError
from helix.specs.fields import as_number, parse_nested, read_text
from helix.specs.model import _INT_FIELDS, ModelSpec


def from_hf_config(path: Path) -> ModelSpec:
    """Build a spec from a Hugging Face ``config.json`` (model_type llama, mistral, qwen2, deepseek_v2,
    deepseek_v3 or deepseek_v32)."""
    where = path.name
    text = read_text(path, "--model")
    try:
        cfg = parse_nested(json.loads, text, path, "--model", "JSON")
    except json.JSONDecodeError as exc:
        raise HelixInputError(where, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise HelixInputError(where, "must hold a JSON object")
    kind = cfg.get("model_type")
    supported = ("llama", "mistral", "qwen2", "deepseek_v2", "deepseek_v3", "deepseek_v32")
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
    else:  # deepseek_v2 / deepseek_v3 / deepseek_v32
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
        if kind == "deepseek_v32":  # DSA: transformers' DeepseekV32Config names (5.24)
            spec_fields.update(index_heads=get("index_n_heads"), index_head_dim=get("index_head_dim"),
                               index_topk=get("index_topk"))
    for k, v in spec_fields.items():
        if k in _INT_FIELDS:
            spec_fields[k] = as_number(f"{where}.{k}", v, integer=True)
    return ModelSpec(**spec_fields)
