"""Our layout in each serving engine's own settings: TensorRT-LLM, vLLM and SGLang.

``engine_settings(engine, layout, model)`` returns the settings that run ``layout`` (``Settings``), or
raises ``InexpressibleError`` naming what the engine cannot set. Every key is cited in docs/engines.md.

  TensorRT-LLM (LLM-API options YAML, the generation server of a disaggregated deployment):
    tensor_parallel_size = TPA (or DP with enable_attention_dp), context_parallel_size = KVP with
    cp_config {cp_type: HELIX, tokens_per_block}, pipeline_parallel_size = PP, moe_tensor_parallel_size
    = TPF, moe_expert_parallel_size = EP. Helix repurposes the CP ranks as TP for the FFN, so the MoE
    spans tp x cp = N. Attention DP makes every attention rank its own DP rank: TPA > 1 with DP > 1 has
    no setting; nor has Medha (its FFN replicated per KVP group).
  vLLM (``vllm serve``): --tensor-parallel-size = TPA x KVP, --decode-context-parallel-size = KVP (DCP
    reuses the TP ranks: TP % DCP == 0, and the FFN's TP is attention's TP), --data-parallel-size = DP,
    --pipeline-parallel-size = PP; MoE layers are sharded over TP x DP either all as TP or, with
    --enable-expert-parallel, all as EP: TPF x EP with both > 1 has no setting. A dense model with DP >
    1 is independent replicas (no shared FFN), and for GQA the DCP size is at most TP / KV heads.
  SGLang (``python -m sglang.launch_server``): --tp-size = N, --dp-size = DP with --enable-dp-attention
    (attention TP = N / DP = TPA x KVP), --dcp-size = KVP (within the attention TP group, MLA only),
    --ep-size = EP (MoE TP = N / EP = TPF), --pp-size = PP. Medha has no setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from helix.errors import HelixInputError
from helix.layout import Layout

ENGINES = ("trtllm", "vllm", "sglang")
ENGINE_NAMES = {"trtllm": "TensorRT-LLM", "vllm": "vLLM", "sglang": "SGLang"}
FILES = {"trtllm": "trtllm.yaml", "vllm": "vllm.sh", "sglang": "sglang.sh"}
TOKENS_PER_BLOCK = 32  # TensorRT-LLM's Helix example (docs/source/features/helix.md)


class InexpressibleError(Exception):
    """The engine has no setting for this layout; the message says which rule it breaks."""


@dataclass(frozen=True)
class Settings:
    """The engine's parallel sizes for one layout, and the product that must equal the GPU count."""

    engine: str
    layout: Layout
    sizes: dict = field(default_factory=dict)  # engine key -> value, in the engine's own names
    world_size: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise HelixInputError("--emit", f"unknown engine {self.engine!r}; allowed: {', '.join(ENGINES)}")
        if self.world_size != self.layout.num_gpus:
            raise HelixInputError("layout", f"{ENGINE_NAMES[self.engine]} sizes multiply to {self.world_size}, "
                                            f"not the layout's {self.layout.num_gpus} GPUs")


def _no_medha(engine: str, layout: Layout) -> None:
    if layout.strategy == "medha":
        raise InexpressibleError(f"{ENGINE_NAMES[engine]} has no FFN replicated per KV-parallel group (Medha): its "
                            "FFN runs on all the attention ranks")


def trtllm(layout: Layout, model) -> Settings:
    _no_medha("trtllm", layout)
    if layout.dp > 1 and layout.tpa > 1:
        raise InexpressibleError(f"TensorRT-LLM's enable_attention_dp makes every attention rank its own DP rank "
                            f"(attention TP 1); TPA = {layout.tpa} with DP = {layout.dp} has no setting")
    adp = layout.dp > 1
    sizes = {"tensor_parallel_size": layout.dp if adp else layout.tpa, "context_parallel_size": layout.kvp,
             "pipeline_parallel_size": layout.pp, "enable_attention_dp": adp}
    if model.is_moe:
        sizes.update(moe_tensor_parallel_size=layout.tpf, moe_expert_parallel_size=layout.ep)
    if layout.kvp > 1:
        sizes["cp_config"] = {"cp_type": "HELIX", "tokens_per_block": TOKENS_PER_BLOCK}
        sizes["kv_cache_config"] = {"tokens_per_block": TOKENS_PER_BLOCK}
    world = sizes["tensor_parallel_size"] * layout.kvp * layout.pp
    return Settings("trtllm", layout, sizes, world)


def vllm(layout: Layout, model) -> Settings:
    _no_medha("vllm", layout)
    tp = layout.tpa * layout.kvp
    if not model.is_moe and layout.dp > 1:
        raise InexpressibleError(f"vLLM's data parallelism runs a dense model as independent replicas; attention DP = "
                            f"{layout.dp} with one FFN over all {layout.gpus_per_stage} GPUs has no setting")
    if not model.is_moe and layout.tpf != tp:
        raise InexpressibleError(f"vLLM's FFN runs at the attention TP width {tp}; TPF = {layout.tpf} has no setting")
    if model.is_moe and layout.tpf > 1 and layout.ep > 1:
        raise InexpressibleError(f"vLLM shards MoE layers over TP x DP all as TP or all as EP "
                            f"(--enable-expert-parallel); TPF = {layout.tpf} x EP = {layout.ep} has no setting")
    if layout.kvp > 1 and not model.is_mla and layout.tpa < model.cache_heads:
        raise InexpressibleError(f"vLLM bounds the DCP size by TP / KV heads; KVP = {layout.kvp} needs TPA >= "
                            f"{model.cache_heads} KV heads, got TPA = {layout.tpa}")
    sizes = {"--tensor-parallel-size": tp, "--decode-context-parallel-size": layout.kvp,
             "--data-parallel-size": layout.dp, "--pipeline-parallel-size": layout.pp}
    if model.is_moe and layout.ep > 1:
        sizes["--enable-expert-parallel"] = True
    return Settings("vllm", layout, sizes, tp * layout.dp * layout.pp)


def sglang(layout: Layout, model) -> Settings:
    _no_medha("sglang", layout)
    if layout.kvp > 1 and not model.is_mla:
        raise InexpressibleError(f"SGLang's decode context parallelism stripes the MLA KV cache; {model.name} is GQA "
                            f"(KVP = {layout.kvp} has no setting)")
    n = layout.gpus_per_stage
    sizes = {"--tp-size": n, "--dp-size": layout.dp, "--enable-dp-attention": layout.dp > 1,
             "--dcp-size": layout.kvp, "--pp-size": layout.pp}
    if model.is_moe:
        sizes["--ep-size"] = layout.ep
    return Settings("sglang", layout, sizes, n * layout.pp)


def engine_settings(engine: str, layout: Layout, model) -> Settings:
    if engine not in ENGINES:
        raise HelixInputError("--emit", f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    return {"trtllm": trtllm, "vllm": vllm, "sglang": sglang}[engine](layout, model)


def expressible(engine: str, layout: Layout, model) -> bool:
    try:
        engine_settings(engine, layout, model)
    except InexpressibleError:
        return False
    return True


def _yaml_value(v) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def render(s: Settings, model_name: str, header: list[str]) -> str:
    """The file the engine takes: an LLM-API options YAML (TensorRT-LLM) or a launch command (vLLM, SGLang)."""
    comments = [f"# {line}" for line in header]
    if s.engine == "trtllm":
        lines = comments + ["# trtllm-serve MODEL --extra_llm_api_options trtllm.yaml (the generation server)"]
        for k, v in s.sizes.items():
            if isinstance(v, dict):
                lines.append(f"{k}:")
                lines += [f"  {kk}: {_yaml_value(vv)}" for kk, vv in v.items()]
            else:
                lines.append(f"{k}: {_yaml_value(v)}")
        return "\n".join(lines) + "\n"
    flags = []
    for k, v in s.sizes.items():
        if isinstance(v, bool):
            if v:
                flags.append(k)
        else:
            flags.append(f"{k} {v}")
    start = ('vllm serve "$MODEL"' if s.engine == "vllm" else 'python3 -m sglang.launch_server --model-path "$MODEL"')
    body = " \\\n    ".join([start, *flags])
    return "\n".join(["#!/bin/sh", *comments,
                      f'MODEL="${{MODEL:?set MODEL to the checkpoint folder or Hugging Face id of {model_name}}}"',
                      f"exec {body}"]) + "\n"
