"""Hand-computed MLA and MoE cases for DeepSeek-R1."""

import pytest

from helix import Layout, load_hardware, load_model, simulate
from helix.cost.memory import kv_bytes_per_token_per_layer_per_gpu
from helix.specs import PrecisionSpec

R1 = load_model("deepseek-r1")
IDEAL = load_hardware("ideal")


@pytest.mark.parametrize(("fmt", "bytes_"), [("fp4", 288.0), ("fp8", 576.0), ("bf16", 1152.0)])
def test_mla_kv_bytes_per_token_per_layer(fmt, bytes_):
    # 512 latent + 64 RoPE key = 576 elements per token per layer, shared by all 128 heads
    assert kv_bytes_per_token_per_layer_per_gpu(R1, PrecisionSpec.uniform(fmt), 1) == bytes_


def test_mla_kv_is_duplicated_under_tp():
    # TP = 8 splits the heads but every rank still holds the whole latent cache
    one = simulate(R1, IDEAL, Layout.tp(1), 1, 10**6)
    eight = simulate(R1, IDEAL, Layout.tp(8), 1, 10**6)
    assert float(one.kv_bytes_per_gpu) == float(eight.kv_bytes_per_gpu) == 61 * 10**6 * 288
    helix = simulate(R1, IDEAL, Layout.helix(kvp=8, tpa=1, ep=8), 1, 10**6)
    assert float(helix.kv_bytes_per_gpu) == 61 * 125_000 * 288


def test_mla_attention_is_compute_bound_with_bf16_math():
    # absorbed MLA: 2*128*(576+512) = 278,528 FLOP per cached token per layer at the bf16 peak 2.5 PF/s,
    # against 288 B per cached token (FP4 cache) at 8 TB/s
    p = PrecisionSpec(attention_compute="bf16")
    r = simulate(R1, IDEAL, Layout.helix(kvp=1, tpa=1), 1, 10**6, p)
    flops_s = 278_528 * 10**6 / 2.5e15
    bytes_s = 288 * 10**6 / 8e12
    assert flops_s > bytes_s
    assert float(r.breakdown["attention"]) / 61 == pytest.approx(flops_s, rel=1e-12)


def test_tpa_above_one_is_rejected_for_mla_helix():
    with pytest.raises(ValueError, match="tpa: helix needs tpa <= KV heads \\(1\\)"):
        simulate(R1, IDEAL, Layout.helix(kvp=4, tpa=2), 1, 1000)


@pytest.mark.parametrize(("batch", "touched"), [(1, 1.0), (16, 32 * (1 - (248 / 256) ** 16))])
def test_moe_expected_experts_touched_and_weight_bytes(batch, touched):
    # EP = 8 -> 32 local experts; each token picks 8 of 256, so one token touches 32 * 8/256 = 1 expert
    r = simulate(R1, IDEAL, Layout.helix(kvp=8, tpa=1, tpf=1, ep=8), batch, 1000)
    expert = 3 * 7168 * 2048  # 44,040,192 parameters per expert
    shared = expert / 8  # the shared expert is sharded over all N = 8 ranks
    router = 7168 * 256
    per_layer = (touched * expert + shared + router) * 0.5
    assert float(r.hbm_read_bytes_per_gpu["moe"]) / 58 == pytest.approx(per_layer, rel=1e-12)


def test_expert_imbalance_raises_expert_time_when_compute_bound():
    # large batch, bf16 math: expert GEMMs are compute-bound, so a 2x hot rank doubles the expert FLOP time
    p = PrecisionSpec(compute="bf16")  # FP4 weights read in 88 us, bf16 math on 4096 pairs takes 144 us
    layout = Layout.helix(kvp=8, tpa=1, tpf=1, ep=8)
    base = simulate(R1, IDEAL, layout, 4096, 1000, p)
    hot = simulate(R1, IDEAL, layout, 4096, 1000, p, expert_imbalance=2.0)
    pairs = 4096 * 8 / 8  # token-expert pairs per rank on average
    assert float(base.breakdown["moe_experts"]) / 58 == pytest.approx(2 * pairs * 3 * 7168 * 2048 / 2.5e15, rel=1e-9)
    assert float(hot.breakdown["moe_experts"]) == pytest.approx(2 * float(base.breakdown["moe_experts"]), rel=1e-9)


def test_expert_imbalance_touches_more_experts_and_loads_dispatch():
    # a 2x hot rank behaves as if it saw 2B tokens' routing: 32 (1 - (248/256)^(2B)) local experts
    layout = Layout.helix(kvp=8, tpa=1, tpf=1, ep=8)
    hot = simulate(R1, IDEAL, layout, 16, 1000, expert_imbalance=2.0)
    expert, shared, router = 3 * 7168 * 2048, 3 * 7168 * 2048 / 8, 7168 * 256
    touched = 32 * (1 - (248 / 256) ** 32)
    assert float(hot.hbm_read_bytes_per_gpu["moe"]) / 58 == pytest.approx((touched * expert + shared + router) * 0.5)
    # DP+EP: the hot rank receives 2x the mean dispatch rows: 16/8 tokens x 8 experts x 7168 x 0.5 B = 57,344 B mean
    gb200 = load_hardware("gb200-nvl72", engine="none")  # the roofline collective: alpha + n * beta
    base = simulate(R1, gb200, Layout.dp_ep(8), 16, 1000)
    skew = simulate(R1, gb200, Layout.dp_ep(8), 16, 1000, expert_imbalance=2.0)
    beta = (7 / 8) / (900e9 * 0.8)  # direct all-to-all: (p-1)/p of n crosses links at 80 % of 900 GB/s
    extra = float(skew.comm_total_s["moe_dispatch_all_to_all"] - base.comm_total_s["moe_dispatch_all_to_all"])
    assert extra / 58 == pytest.approx(57_344 * beta, rel=1e-9)
