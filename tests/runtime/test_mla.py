"""MLA in the absorbed form against Hugging Face's DeepseekV3Attention (single process, no collectives)."""

from __future__ import annotations

import math

import pytest
import torch

from helix.errors import HelixInputError
from helix.runtime.attention import combine_partial_attention
from helix.runtime.deepseek import arch_from_hf_config
from helix.runtime.deepseek_hf import tiny_deepseek, tiny_deepseek_config
from helix.runtime.mla import check_mla_layout, latent_attention, o_projection, project, shard_mla, values

T = 23  # tokens of the causal prefill checked against HF


def _attention(model, layer: int):
    return model.model.layers[layer].self_attn


def _hf_attention(model, layer: int, x: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(x.shape[1])[None]
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)[None, None]
    with torch.no_grad():
        return _attention(model, layer)(x, model.model.rotary_emb(x, pos), mask)[0]


def _helix_attention_one_rank(model, layer: int, x: torch.Tensor, shards: int = 1) -> torch.Tensor:
    """Absorbed MLA with the cache split round-robin into `shards` pieces, merged by the LSE combine."""
    cfg = arch_from_hf_config(model.config).mla
    sd = model.state_dict()
    w = shard_mla(lambda k: sd[k].float(), f"model.layers.{layer}.self_attn.", cfg, 0, 1)
    pos = torch.arange(x.shape[1])
    q_c, q_r, c, k_r = project(x, pos, w, cfg)
    outs, lses = [], []
    for s in range(shards):
        own = pos % shards == s  # round-robin by token: some shards see nothing for early queries
        o, lse = latent_attention(q_c, q_r, c[:, own], k_r[:, own], pos, pos[own], cfg.softmax_scale)
        outs.append(values(o, w))
        lses.append(lse)
    out, _ = combine_partial_attention(torch.stack(outs), torch.stack(lses))  # [B, T, Q, v]
    return o_projection(out, w)


@pytest.fixture(scope="module")
def model():
    return tiny_deepseek()


def test_absorbed_mla_equals_hf_attention(model):
    x = torch.randn(3, T, 64, generator=torch.Generator().manual_seed(0))
    ref = _hf_attention(model, 1, x)
    got = _helix_attention_one_rank(model, 1, x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert float(ref.abs().max()) > 0.5  # a real signal, not a near-zero output


def test_yarn_softmax_scale_includes_mscale_squared(model):
    # qk_head_dim = 24; YaRN factor 4, mscale_all_dim 1: scale = 24^-0.5 * (0.1 ln 4 + 1)^2
    expected = 24 ** -0.5 * (0.1 * math.log(4.0) + 1.0) ** 2
    assert arch_from_hf_config(model.config).mla.softmax_scale == pytest.approx(expected, rel=1e-12)
    assert _attention(model, 0).scaling == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shards", [2, 5])
def test_sharded_cache_with_empty_shards_combines_exactly(model, shards):
    x = torch.randn(2, T, 64, generator=torch.Generator().manual_seed(1))
    ref = _hf_attention(model, 2, x)
    got = _helix_attention_one_rank(model, 2, x, shards)  # query 0 sees nothing on shards 1..
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_empty_shard_gives_zero_output_and_minus_inf_lse():
    q_c, q_r = torch.randn(2, 1, 4, 8), torch.randn(2, 1, 4, 3)
    out, lse = latent_attention(q_c, q_r, torch.zeros(2, 0, 8), torch.zeros(2, 0, 3), torch.tensor([5]),
                                torch.zeros(0, dtype=torch.int64), 0.3)
    assert torch.equal(out, torch.zeros(2, 1, 4, 8))
    assert torch.equal(lse, torch.full((2, 1, 4), float("-inf")))


@pytest.mark.parametrize("q_lora_rank, interleave", [(None, False), (48, False)])
def test_variants_without_query_compression_or_interleave(q_lora_rank, interleave):
    from transformers import DeepseekV3ForCausalLM

    cfg = tiny_deepseek_config()
    cfg.q_lora_rank, cfg.rope_interleave, cfg.num_hidden_layers = q_lora_rank, interleave, 2
    torch.manual_seed(3)
    model = DeepseekV3ForCausalLM(cfg).eval()
    x = torch.randn(2, T, 64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_helix_attention_one_rank(model, 1, x, 3), _hf_attention(model, 1, x),
                               rtol=1e-5, atol=1e-5)


def test_tpa_above_one_is_refused_for_mla():
    with pytest.raises(HelixInputError, match="tpa: must be 1 for MLA"):
        check_mla_layout(2, 4, 8)
    with pytest.raises(HelixInputError, match=r"kvp: must divide the query heads \(8\)"):
        check_mla_layout(1, 3, 8)
