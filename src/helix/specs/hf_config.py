"""A model spec from a Hugging Face ``config.json``: the families in SUPPORTED.

Field names as transformers 5.24's configuration classes spell them (LlamaConfig, Qwen3Config,
Qwen3MoeConfig, MixtralConfig, GptOssConfig, Llama4TextConfig, Glm4MoeConfig, DeepseekV3Config,
DeepseekV32Config). What each family maps to, and what is simplified:
- dense GQA (llama, mistral, qwen2, qwen3): heads, head_dim (default hidden_size / heads), SwiGLU FFN;
- MoE GQA: qwen3_moe (num_experts, moe_intermediate_size; a layer is MoE where (i+1) % decoder_sparse_step
  == 0 and i not in mlp_only_layers), mixtral and gpt_oss (num_local_experts of intermediate_size, every
  layer), llama4 (text_config; num_local_experts of intermediate_size plus one shared expert on the
  moe_layers / every interleave_moe_layer_step-th layer, dense intermediate_size_mlp elsewhere), glm4_moe
  (DeepSeek's MoE fields on GQA attention; its MTP layer is left out). Interleaved dense layers are
  counted, not placed: a PP stage split treats them as leading layers;
- sliding-window layers: layer_types' "sliding_attention" and "chunked_attention" entries (gpt-oss:
  every other layer, W = sliding_window = 128; Llama-4: 3 of 4 layers chunked at attention_chunk_size,
  taken as a window of that size, the upper bound of a chunk's reads; its no-RoPE layers are the global
  ones and change no KV read); without layer_types, mistral/mixtral's sliding_window covers every layer and
  qwen2/qwen3's (when use_sliding_window) the layers from max_window_layers on. gpt-oss's attention
  sinks are one learned logit per head added to the softmax, not cached tokens: no KV, no read modelled;
  attention and expert biases are left out of the weights;
- MLA (deepseek_v2, deepseek_v3 incl. Kimi-K2, deepseek_v32 with DSA's index_n_heads, index_head_dim,
  index_topk);
- quantization_config: quant_method "fp8" -> attention and FFN weights fp8_block (with weight_block_size,
  DeepSeek-V3 / Kimi-K2) or fp8; "mxfp4" (gpt-oss) -> expert weights mxfp4, attention weights bf16
  (its modules_to_not_convert). The CLI's --precision / --*-weights-precision flags win over it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helix.errors import HelixInputError
from helix.specs.fields import as_number, parse_nested, read_text
from helix.specs.model import INT_FIELDS, ModelSpec

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "gpt_oss", "llama4", "glm4_moe", "kimi_k2",
             "deepseek_v2", "deepseek_v3", "deepseek_v32")
MLA = ("deepseek_v2", "deepseek_v3", "deepseek_v32", "kimi_k2")  # Kimi-K2 ships model_type kimi_k2, DeepSeek-V3 code
WINDOWED = ("sliding_attention", "chunked_attention")  # layer_types entries that read at most a window
QUANT_FORMATS = ("fp8", "mxfp4")  # quantization_config.quant_method values understood


def from_hf_config(path: Path) -> ModelSpec:
    """Build a spec from a Hugging Face ``config.json`` (model_type one of SUPPORTED)."""
    top, cfg, where, kind = _load(path)
    get, num = _accessors(cfg, where, kind)
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
    common.update(max_context=get("max_position_embeddings", 0),
                  **_weight_formats(top.get("quantization_config"), f"{path.name}.quantization_config"))
    if kind not in MLA:
        spec_fields = {**common, **_gqa_fields(kind, cfg, where, get, num)}
    else:
        spec_fields = dict(common, **_mla_fields(kind, get, num))
    for k, v in spec_fields.items():
        if k in INT_FIELDS:
            spec_fields[k] = as_number(f"{where}.{k}", v, integer=True)
    return ModelSpec(**spec_fields)


def _load(path: Path) -> tuple[dict, dict, str, str]:
    """(the whole JSON object, the decoder's config, its name in errors, model_type); llama4's decoder is
    its text_config."""
    where = path.name
    text = read_text(path, "--model")
    try:
        cfg = parse_nested(json.loads, text, path, "--model", "JSON")
    except json.JSONDecodeError as exc:
        raise HelixInputError(where, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise HelixInputError(where, "must hold a JSON object")
    kind = cfg.get("model_type")
    if kind not in SUPPORTED:
        raise HelixInputError(f"{where}.model_type", f"unsupported {kind!r}; allowed: {', '.join(SUPPORTED)}")
    top = cfg
    if kind == "llama4":  # the multimodal wrapper: the decoder is its text_config
        cfg = cfg.get("text_config")
        if not isinstance(cfg, dict):
            raise HelixInputError(f"{where}.text_config", "missing (required for model_type 'llama4')")
        where = f"{where}.text_config"
    return top, cfg, where, kind


def _accessors(cfg: dict, where: str, kind: str):
    """(get, num): a field (required unless given a default), and an integer field checked before any
    arithmetic uses it; both name ``where.key`` in their errors."""

    def get(key: str, default: Any = None) -> Any:
        if key in cfg and cfg[key] is not None:
            if isinstance(cfg[key], str):  # JSON types its numbers: "32" is a mistake, not YAML's 8.0e12 quirk
                raise HelixInputError(f"{where}.{key}", f"must be a JSON number, got the string {cfg[key]!r}")
            return cfg[key]
        if default is None:
            raise HelixInputError(f"{where}.{key}", f"missing (required for model_type {kind!r})")
        return default

    def num(key: str, default: Any = None) -> int:
        return as_number(f"{where}.{key}", get(key, default), integer=True)

    return get, num


def _gqa_fields(kind: str, cfg: dict, where: str, get, num) -> dict:
    """GQA attention's heads and head_dim, then the family's MoE and sliding-window fields."""
    heads = num("num_attention_heads")
    if heads < 1:
        raise HelixInputError(f"{where}.num_attention_heads", f"must be >= 1, got {heads}")
    out = dict(num_kv_heads=get("num_key_value_heads", heads), head_dim=get("head_dim", num("hidden_size") // heads))
    out.update(_moe_fields(kind, cfg, get, num), **_window_fields(kind, cfg, where, get, num))
    return out


def _mla_fields(kind: str, get, num) -> dict:
    """deepseek_v2 / deepseek_v3 / deepseek_v32: MLA's ranks and head dims, DeepSeek's MoE, and DSA's indexer."""
    out = dict(
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
        out.update(index_heads=get("index_n_heads"), index_head_dim=get("index_head_dim"), index_topk=get("index_topk"))
    return out


def _moe_fields(kind: str, cfg: dict, get, num) -> dict:
    """The MoE fields of a GQA family (none for the dense ones)."""
    layers = num("num_hidden_layers")
    if kind == "qwen3_moe":
        step, dense_only = max(num("decoder_sparse_step", 1), 1), set(cfg.get("mlp_only_layers") or [])
        moe = sum(1 for i in range(layers) if (i + 1) % step == 0 and i not in dense_only)
        return dict(num_experts=get("num_experts"), experts_per_token=get("num_experts_per_tok"),
                    expert_ffn_dim=get("moe_intermediate_size"), num_dense_layers=layers - moe)
    if kind in ("mixtral", "gpt_oss"):
        return dict(num_experts=get("num_local_experts"), experts_per_token=get("num_experts_per_tok"),
                    expert_ffn_dim=get("intermediate_size"))
    if kind == "llama4":
        step = max(num("interleave_moe_layer_step", 1), 1)
        moe_layers = cfg.get("moe_layers") or list(range(step - 1, layers, step))
        return dict(num_experts=get("num_local_experts"), experts_per_token=get("num_experts_per_tok"),
                    expert_ffn_dim=get("intermediate_size"), ffn_dim=get("intermediate_size_mlp"),
                    num_shared_experts=1, num_dense_layers=layers - len(moe_layers))
    if kind == "glm4_moe":
        return dict(num_experts=get("n_routed_experts"), experts_per_token=get("num_experts_per_tok"),
                    expert_ffn_dim=get("moe_intermediate_size"), num_shared_experts=get("n_shared_experts", 0),
                    num_dense_layers=get("first_k_dense_replace", 0), num_expert_groups=get("n_group", 1),
                    topk_expert_groups=get("topk_group", 1))
    return {}


def _window_fields(kind: str, cfg: dict, where: str, get, num) -> dict:
    """Sliding-window / chunked layers: how many, and the window (see the module docstring)."""
    window_key = "attention_chunk_size" if kind == "llama4" else "sliding_window"
    types = cfg.get("layer_types")
    if isinstance(types, list):
        count = sum(1 for t in types if t in WINDOWED)
    elif kind in ("mistral", "mixtral") and cfg.get("sliding_window") is not None:
        count = num("num_hidden_layers")
    elif kind in ("qwen2", "qwen3", "qwen3_moe") and cfg.get("use_sliding_window") and cfg.get("sliding_window"):
        count = num("num_hidden_layers") - min(num("max_window_layers", 0), num("num_hidden_layers"))
    elif kind == "llama4" and cfg.get("attention_chunk_size"):  # no layer_types: 3 of 4 layers chunked
        count = sum(1 for i in range(num("num_hidden_layers")) if (i + 1) % 4)
    else:
        count = 0
    if not count:
        return {}
    window = num(window_key)
    if window < 1:
        raise HelixInputError(f"{where}.{window_key}", f"must be >= 1 with windowed layers, got {window}")
    return dict(sliding_window=window, num_sliding_layers=count)


def _weight_formats(qc: Any, where: str) -> dict:
    """quantization_config -> the checkpoint's weight formats (mapping in the module docstring)."""
    if qc is None:
        return {}
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if method == "fp8":
        fmt = "fp8_block" if qc.get("weight_block_size") else "fp8"
        return dict(attention_weights_format=fmt, ffn_weights_format=fmt)
    if method == "mxfp4":
        return dict(attention_weights_format="bf16", ffn_weights_format="mxfp4")
    raise HelixInputError(f"{where}.quant_method", f"unsupported {method!r}; allowed: {', '.join(QUANT_FORMATS)}")
