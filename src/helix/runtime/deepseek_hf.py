"""The DeepSeek-V3 family as Hugging Face describes it: its architecture (``DeepseekArch``, read from a config
by ``hf_arch_fields``, shared by V3 and V3.2, helix.runtime.deepseek and helix.runtime.deepseek_v32), the
simulator's view of it (``model_spec``) and the registry's tiny V3 model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helix.errors import HelixInputError
from helix.runtime.mla import MLAConfig
from helix.runtime.moe import RouterConfig
from helix.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class DeepseekArch:
    """The numbers of a DeepSeek-V3 config the decoder needs (plain values: pickles without transformers)."""

    vocab_size: int  # V
    hidden_dim: int  # H
    num_layers: int  # L
    ffn_dim: int  # F (dense layers)
    expert_ffn_dim: int  # Fe
    num_shared_experts: int
    num_dense_layers: int  # first_k_dense_replace
    rms_norm_eps: float
    mla: MLAConfig
    router: RouterConfig


def arch_from_hf_config(cfg) -> DeepseekArch:
    """DeepseekArch from a transformers ``DeepseekV3Config``; RoPE and softmax scale via HF's own code."""
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf

    return DeepseekArch(**hf_arch_fields(cfg, hf.DeepseekV3RotaryEmbedding, hf.yarn_apply_mscale,
                                         bool(cfg.rope_interleave), cfg.first_k_dense_replace))


def model_spec(arch: DeepseekArch, name: str) -> ModelSpec:
    """The simulator's view of the same model (layout checks, traffic formulas)."""
    m, r = arch.mla, arch.router
    return ModelSpec(
        name=name, num_layers=arch.num_layers, hidden_dim=arch.hidden_dim, num_query_heads=m.num_heads,
        num_kv_heads=m.num_heads, head_dim=m.d_nope + m.d_rope, ffn_dim=arch.ffn_dim, vocab_size=arch.vocab_size,
        attention="mla", q_lora_rank=m.q_lora_rank, kv_lora_rank=m.d_latent, qk_nope_head_dim=m.d_nope,
        qk_rope_head_dim=m.d_rope, v_head_dim=m.v_head_dim, num_experts=r.num_experts,
        experts_per_token=r.experts_per_token, expert_ffn_dim=arch.expert_ffn_dim,
        num_shared_experts=arch.num_shared_experts, num_dense_layers=arch.num_dense_layers,
        num_expert_groups=r.num_groups, topk_expert_groups=r.topk_groups, source="runtime registry")


def hf_arch_fields(cfg, rotary_class, yarn_apply_mscale, rope_interleave: bool, num_dense_layers: int) -> dict:
    """The DeepseekArch fields of a DeepSeek-V3-family HF config (V3 and V3.2 share them; each passes its
    own rotary class and MLA RoPE layout), after the checks the runtime needs."""
    if getattr(cfg, "attention_bias", False):
        raise HelixInputError("model.attention_bias", "is not supported")
    if cfg.hidden_act != "silu":
        raise HelixInputError("model.hidden_act", f"must be 'silu', got {cfg.hidden_act!r}")
    if cfg.n_routed_experts % cfg.n_group:
        raise HelixInputError("model.n_group", f"must divide n_routed_experts ({cfg.n_routed_experts})")
    rotary = rotary_class(cfg)
    qk_head_dim = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    mla = MLAConfig(
        num_heads=cfg.num_attention_heads, d_nope=cfg.qk_nope_head_dim, d_rope=cfg.qk_rope_head_dim,
        d_latent=cfg.kv_lora_rank, v_head_dim=cfg.v_head_dim, q_lora_rank=cfg.q_lora_rank or 0,
        latent_norm_eps=1e-6,  # HF's RMSNorm default: q_a/kv_a_layernorm do not take rms_norm_eps
        rope_inv_freq=tuple(float(f) for f in rotary.inv_freq), rope_scaling=float(rotary.attention_scaling),
        rope_interleave=rope_interleave,
        softmax_scale=float(yarn_apply_mscale(cfg.rope_parameters, qk_head_dim ** -0.5)))
    router = RouterConfig(cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group,
                          bool(cfg.norm_topk_prob), float(cfg.routed_scaling_factor))
    return dict(vocab_size=cfg.vocab_size, hidden_dim=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
                ffn_dim=cfg.intermediate_size, expert_ffn_dim=cfg.moe_intermediate_size,
                num_shared_experts=cfg.n_shared_experts, num_dense_layers=num_dense_layers,
                rms_norm_eps=float(cfg.rms_norm_eps), mla=mla, router=router)


# ---------------------------------------------------------------- the registry's tiny model


# The tiny DeepSeek shape both test models share (tiny-deepseek-v32 adds its indexer and runs 3 layers).
TINY_DEEPSEEK_SHAPE = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
    num_hidden_layers=4, first_k_dense_replace=1,
    num_attention_heads=8, num_key_value_heads=8,
    q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
    n_routed_experts=16, n_shared_experts=1, n_group=4, topk_group=2, num_experts_per_tok=4,
    routed_scaling_factor=2.5, norm_topk_prob=True,
    max_position_embeddings=1024, initializer_range=0.2, tie_word_embeddings=False,
    rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=256,
                         mscale=1.0, mscale_all_dim=1.0, beta_fast=32, beta_slow=1),
    bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="eager",
)


def tiny_deepseek_config():
    """1 dense + 3 MoE layers, 16 experts in 4 groups (top-2 groups, top-4 experts), YaRN RoPE with mscale."""
    from transformers import DeepseekV3Config

    return DeepseekV3Config(**TINY_DEEPSEEK_SHAPE)


def tiny_deepseek(seed: int = 0):
    """A random-initialised ``DeepseekV3ForCausalLM`` (fp32, eval), perturbed norms and a random routing bias."""
    from transformers import DeepseekV3ForCausalLM

    return random_tiny(DeepseekV3ForCausalLM, tiny_deepseek_config(), seed)


def random_tiny(model_class, config, seed: int):
    """``model_class(config)`` random-initialised under ``seed`` (fp32, eval), with what HF initialises to
    constants perturbed so that it matters: norm weights (1 at init), norm biases such as V3.2's indexer
    key norm (0) and the routing bias (0, so that it steers the choice)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("k_norm.bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))
    return model.float().eval()
