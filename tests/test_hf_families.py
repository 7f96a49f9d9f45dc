"""Every supported config.json family, from the public configs shipped in tests/data (field names as
transformers 5.24's config classes spell them). Each value below is worked out by hand from the config."""

from pathlib import Path

import pytest

from helix import Layout, load_hardware, load_model, simulate
from helix.specs.precision import PrecisionSpec

DATA = Path(__file__).parent / "data"
KV2 = 2.0  # KV bytes per element in BF16


def spec(name):
    return load_model(DATA / f"{name}.config.json")


def test_qwen3_32b_dense_gqa():
    m = spec("qwen3-32b")  # 64 layers, H 5120, Q 64, K 8, head_dim 128 (not H/Q = 80), F 25600
    assert (m.is_moe, m.head_dim, m.num_sliding_layers, m.max_context) == (False, 128, 0, 40960)
    assert m.attention_params == 2 * 5120 * 64 * 128 + 2 * 5120 * 8 * 128 == 94_371_840
    assert m.dense_ffn_params == 3 * 5120 * 25600 == 393_216_000
    assert m.kv_cache_bytes_per_token(KV2) == 64 * 8 * 2 * 128 * 2 == 262_144


def test_qwen3_235b_moe():
    m = spec("qwen3-235b-a22b")  # decoder_sparse_step 1, mlp_only_layers []: all 94 layers MoE
    assert (m.num_experts, m.experts_per_token, m.num_moe_layers, m.num_dense_ffn_layers) == (128, 8, 94, 0)
    assert m.expert_params == 3 * 4096 * 1536 == 18_874_368
    assert m.kv_cache_bytes_per_token(KV2) == 94 * 4 * 2 * 128 * 2 == 192_512
    assert m.total_params == pytest.approx(235.09e9, rel=1e-4)  # "235B" on the model card


def test_qwen3_moe_sparse_step_and_mlp_only_layers(tmp_path):
    text = (DATA / "qwen3-235b-a22b.config.json").read_text()
    cfg = tmp_path / "config.json"
    cfg.write_text(text.replace('"decoder_sparse_step": 1', '"decoder_sparse_step": 2')
                   .replace('"mlp_only_layers": []', '"mlp_only_layers": [1, 2]'))
    assert load_model(cfg).num_moe_layers == 47 - 1  # layers 1, 3, ..., 93 minus layer 1


def test_mixtral_8x7b():
    m = spec("mixtral-8x7b")  # 8 experts of F 14336, top-2, sliding_window null: every layer global
    assert (m.num_experts, m.experts_per_token, m.num_moe_layers, m.num_sliding_layers) == (8, 2, 32, 0)
    assert m.expert_params == 3 * 4096 * 14336 == 176_160_768
    per_layer = 41_943_040 + 8 * 176_160_768 + 4096 * 8  # attention + experts + router
    assert m.total_params == 32 * per_layer + 2 * 32000 * 4096 == 46_702_526_464  # "46.7B"
    assert m.kv_cache_bytes_per_token(KV2) == 131_072


def test_gpt_oss_120b_sliding_window_and_mxfp4():
    m = spec("gpt-oss-120b")  # layer_types alternate sliding (W 128) / full: 18 each
    assert (m.sliding_window, m.num_sliding_layers, m.num_experts, m.experts_per_token) == (128, 18, 128, 4)
    assert m.checkpoint_weight_formats == {"attention_weights": "bf16", "ffn_weights": "mxfp4"}
    assert m.kv_cache_bytes_per_token(KV2) == 36 * 8 * 2 * 64 * 2 == 73_728  # every layer at S <= 128
    assert m.mean_attended_tokens(100) == 100
    assert m.mean_attended_tokens(131_072) == (18 * 131_072 + 18 * 128) // 36 == 65_600
    assert m.total_params == pytest.approx(116.79e9, rel=1e-4)  # "117B"
    # KV held per GPU at S = 131,072, TP 8 (one KV head each), batch 1, BF16: 36 layers x 65,600 tokens x 256 B
    r = simulate(m, load_hardware("gb200-nvl72"), Layout.tp(8), 1, 131_072, PrecisionSpec.uniform("bf16"))
    assert r.kv_bytes_per_gpu == 36 * 65_600 * 2 * 64 * 2 == 604_569_600


def test_llama4_maverick_interleave_and_chunks():
    m = spec("llama-4-maverick")  # text_config; MoE every 2nd layer, 3 of 4 layers chunked at 8192
    assert (m.num_moe_layers, m.num_dense_ffn_layers, m.num_shared_experts, m.experts_per_token) == (24, 24, 1, 1)
    assert (m.sliding_window, m.num_sliding_layers, m.ffn_dim, m.expert_ffn_dim) == (8192, 36, 16384, 8192)
    assert m.mean_attended_tokens(1_000_000) == (12 * 1_000_000 + 36 * 8192) // 48 == 256_144
    assert m.total_params == pytest.approx(400.71e9, rel=1e-4)  # "400B" (text decoder)


def test_glm45_moe_on_gqa():
    m = spec("glm-4.5")  # head_dim 128 (H/Q = 53.3), 3 leading dense layers, 160 + 1 shared experts
    assert (m.attention, m.num_dense_ffn_layers, m.num_moe_layers, m.num_experts, m.num_shared_experts) == (
        "gqa", 3, 89, 160, 1)
    assert m.experts_per_token == 8
    assert m.attention_params == 2 * 5120 * 96 * 128 + 2 * 5120 * 8 * 128 == 136_314_880
    assert m.kv_cache_bytes_per_token(KV2) == 92 * 8 * 2 * 128 * 2 == 376_832


def test_kimi_k2_is_deepseek_v3_mla_in_fp8_blocks():
    m = spec("kimi-k2")  # model_type kimi_k2, DeepSeek-V3's fields: 384 experts, 64 heads, 1 dense layer
    assert (m.attention, m.num_experts, m.experts_per_token, m.num_query_heads, m.num_moe_layers) == (
        "mla", 384, 8, 64, 60)
    assert m.kv_cache_bytes_per_token(KV2) == 61 * (512 + 64) * 2 == 70_272
    assert m.checkpoint_weight_formats == {"attention_weights": "fp8_block", "ffn_weights": "fp8_block"}


BASE = ("simulate", "--json", "--strategy", "tp", "--gpus", "8", "--batch", "1", "--context", "2K")


@pytest.mark.parametrize("name", ["qwen3-32b", "qwen3-235b-a22b", "mixtral-8x7b", "gpt-oss-120b", "llama-4-maverick",
                                  "glm-4.5", "kimi-k2", "llama-3.1-405b", "deepseek-v3", "deepseek-v3.2-exp"])
def test_every_family_simulates_from_the_cli(cli, name):
    code, out, err = cli(*BASE, "--model", str(DATA / f"{name}.config.json"))
    assert code == 0 and err == "" and '"ttl_s"' in out
