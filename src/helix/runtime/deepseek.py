"""DeepSeek-V3 decoder on Helix ranks: MLA attention (KVP = N) and MoE / dense FFN (TPF x EP = N).

(Work in progress: the tiny model builder.)
"""

from __future__ import annotations

import torch

TINY_DEEPSEEK_SEED = 0


def tiny_deepseek_config():
    """A small DeepSeek-V3: 1 dense + 3 MoE layers, 16 experts in 4 groups, YaRN RoPE with mscale."""
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=4, first_k_dense_replace=1,
        num_attention_heads=8, num_key_value_heads=8,
        q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        n_routed_experts=16, n_shared_experts=1, n_group=4, topk_group=2, num_experts_per_tok=4,
        routed_scaling_factor=2.5, norm_topk_prob=True,
        max_position_embeddings=1024, initializer_range=0.1,
        rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0, original_max_position_embeddings=256,
                             mscale=1.0, mscale_all_dim=1.0, beta_fast=32, beta_slow=1),
        bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="eager",
    )


def tiny_deepseek(seed: int = TINY_DEEPSEEK_SEED):
    """A random-initialised ``DeepseekV3ForCausalLM`` (fp32, eval), non-trivial norms and routing bias."""
    from transformers import DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(tiny_deepseek_config()).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # HF initialises RMSNorm weights to 1: perturb them
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):  # zero at init: make the bias steer routing
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))
    return model
