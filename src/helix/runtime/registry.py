"""Models the runtime can run: name -> a seeded Hugging Face model and the family that decodes it.

A family is a module exposing ``DECODER`` (a ``helix.runtime.decoder.HelixDecoder`` subclass),
``arch_from_hf_config(config)`` (plain, picklable numbers), ``model_spec(arch, name)`` (the
simulator's ``ModelSpec``) and ``check_layout(layout, arch, name)`` (HelixInputError for a layout the
decoder cannot run). A new family: a module with those four names, one entry in ``FAMILIES`` and a
``ModelEntry`` (``helix.runtime.deepseek`` was added this way).

Presets are built in code from a fixed config and seed: no downloads. Weights are drawn with a
wide initialiser (std 0.2) so greedy tokens have clear margins and token-for-token checks are not
decided by rounding.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from helix.errors import HelixInputError
from helix.runtime import checkpoint
from helix.runtime.model_entry import ModelEntry

# module paths, imported by ``family`` when a job runs one: a job loads only its own decoder
FAMILIES = {"llama": "helix.runtime.llama", "deepseek": "helix.runtime.deepseek",
            "deepseek_v32": "helix.runtime.deepseek_v32"}


def _llama(seed: int = 0, **config) -> object:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(attn_implementation="eager", bos_token_id=None, eos_token_id=None, pad_token_id=None,
                      tie_word_embeddings=False, initializer_range=0.2, **config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model.float().eval()


# Llama 3 RoPE scaling with a short original context, so all three frequency bands (kept, smoothed,
# divided by the factor) occur for head_dim 10 at theta 1e4.
_LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

MODELS: dict[str, ModelEntry] = {
    "tiny-llama": ModelEntry(
        "tiny-llama", "llama",
        lambda: _llama(seed=0, vocab_size=211, hidden_size=72, intermediate_size=91, num_hidden_layers=3,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=10,
                       max_position_embeddings=8192, rope_parameters=dict(_LLAMA3_ROPE)),
        "3 layers, H=72, Q=8, K=4, Hsz=10, F=91, V=211, Llama 3 RoPE; random weights, seed 0"),
    "bench-llama": ModelEntry(
        "bench-llama", "llama",
        lambda: _llama(seed=0, vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=64,
                       max_position_embeddings=1 << 20, rope_parameters=dict(_LLAMA3_ROPE, rope_theta=500000.0)),
        "2 layers, H=256, Q=8, K=4, Hsz=64, F=512, V=1000; for timing (attention-heavy at long context)"),
    "tiny-deepseek": ModelEntry(
        "tiny-deepseek", "deepseek",
        lambda: importlib.import_module("helix.runtime.deepseek_hf").tiny_deepseek(seed=0),
        "DeepSeek-V3 MLA + MoE: 4 layers (1 dense), H=64, Q=8, d_c=32, d_r=8, v=16, E=16 in 4 groups, k=4, "
        "1 shared expert, V=256, YaRN RoPE; random weights, seed 0"),
    "tiny-deepseek-v32": ModelEntry(
        "tiny-deepseek-v32", "deepseek_v32",
        lambda: importlib.import_module("helix.runtime.deepseek_v32").tiny_deepseek_v32(seed=0),
        "DeepSeek-V3.2 (DSA): tiny-deepseek's MLA + MoE in 3 layers (1 dense) with a lightning indexer "
        "(4 heads, D_I=16) keeping the top 8 tokens per query; random weights, seed 0"),
}


def get_model(name: str) -> ModelEntry:
    """A preset by name, or a local checkpoint by its absolute directory path (``helix.runtime.checkpoint``)."""
    if name not in MODELS and os.path.isabs(name):
        return checkpoint.entry(name)
    if name not in MODELS:
        raise HelixInputError("--model", f"unknown runtime model {name!r}; allowed: {', '.join(MODELS)}")
    return MODELS[name]


def family(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise HelixInputError("family", f"unknown model family {name!r}; allowed: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])
