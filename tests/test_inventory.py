"""The decode step's op inventory, counted by hand for one Llama and one DeepSeek layer.

Llama-3.1-405B under TP = 8 and DeepSeek-R1 under Helix (KVP = 8, EP = 8), B = 16, S = 10^6, FP4
(0.5 B per element), activations in BF16 (2 B). Every op's name, kind, bytes and FLOPs are written out.
"""

from dataclasses import replace

import numpy as np
import pytest

from helix import load_model
from helix.cost.inventory import layer_counts, layer_ops
from helix.cost.op_types import Shape
from helix.specs import PrecisionSpec

B, S = 16, 10**6


def shape(model, strategy, tpa, kvp, dp, tpf, ep, **kw):
    a = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return Shape(model, PrecisionSpec(), strategy, a(tpa), a(kvp), a(dp), a(tpf), a(ep), a(1), a(B), a(S), **kw)


def table(ops):
    return {op.name: (op.kind, float(op.bytes), float(op.flops)) for op in ops}


def same(got: dict, expected: dict) -> bool:
    """Same ops in the same launch order, same kinds, bytes and FLOPs to 1e-12."""
    assert list(got) == list(expected)
    for name, (kind, nbytes, flops) in expected.items():
        assert got[name][0] == kind, name
        assert got[name][1:] == pytest.approx((nbytes, flops), rel=1e-12), name
    return True


def test_llama_tp8_layer_by_hand():
    ops = layer_ops(shape(load_model("llama-3.1-405b"), "tp", 8, 1, 1, 8, 1))
    H, F, V = 16384, 53248, 128256
    n_qkv = (128 // 8 + 2 * 1) * 128  # 16 query heads + one K and one V head per rank
    gemm = lambda m, n, k: (n * k * 0.5 + 2 * (m * k + m * n), 2.0 * m * n * k)  # noqa: E731
    expect_attention = {
        "input_norm": ("elementwise", B * H * 8.0, 0.0),  # reads hidden + residual, writes both, BF16
        "qkv_gemm": ("gemm", *gemm(B, n_qkv, H)),
        "rope": ("elementwise", B * (16 + 1) * 128 * 4.0, 0.0),
        "kv_cache_write": ("elementwise", B * 2 * 128 * 2.5, 0.0),  # BF16 in, FP4 into the cache
        "attention": ("attention", B * S * 2 * 128 * 0.5 + 2 * 2 * B * 128, 4.0 * 128 * B * 16 * S),
        "o_gemm": ("gemm", *gemm(B, H, 128 * 128 // 8)),
        "post_attention_norm": ("elementwise", B * H * 8.0, 0.0),
    }
    assert same(table(ops["attention"]), expect_attention)
    width = F // 8
    assert same(table(ops["dense_ffn"]), {
        "gate_up_gemm": ("gemm", *gemm(B, 2 * width, H)),
        "swiglu": ("elementwise", B * width * 6.0, 0.0),
        "down_gemm": ("gemm", *gemm(B, H, width)),
    })
    assert same(table(ops["step"]), {
        "embedding": ("elementwise", B * H * 4.0, 0.0),
        "final_norm": ("elementwise", B * H * 4.0, 0.0),
        "lm_head_gemm": ("gemm", *gemm(B, V / 8, H)),
        "sampling": ("elementwise", B * V / 8 * 2.0, 0.0),
    })
    assert ops["moe_ffn"] == []
    counts = layer_counts(load_model("llama-3.1-405b"), 1)
    assert (int(counts["attention"]), int(counts["dense_ffn"]), int(counts["moe_ffn"])) == (126, 126, 0)


def test_deepseek_helix_layer_by_hand():
    model = load_model("deepseek-r1")
    ops = layer_ops(shape(model, "helix", 1, 8, 1, 1, 8))
    H = 7168
    gemm = lambda m, n, k: (n * k * 0.5 + 2 * (m * k + m * n), 2.0 * m * n * k)  # noqa: E731
    bmm = (128 * 128 * 512 * 0.5 + 2 * B * 128 * (128 + 512), 2.0 * B * 128 * 128 * 512)
    partial = B * 128 * (128 * 0.5 + 4)  # every local head's output (after W_UV) and fp32 LSE, sent to KVP peers
    assert same(table(ops["attention"]), {
        "input_norm": ("elementwise", B * H * 8.0, 0.0),
        "qkv_a_gemm": ("gemm", *gemm(B, 1536 + 512 + 64, H)),  # fused q/kv down-projection, replicated
        "q_a_norm": ("elementwise", B * 1536 * 4.0, 0.0),
        "kv_a_norm": ("elementwise", B * 512 * 4.0, 0.0),
        "q_b_gemm": ("gemm", *gemm(B, 128 * 192, 1536)),
        "w_uk_bmm": ("gemm", *bmm),
        "rope": ("elementwise", B * (128 + 1) * 64 * 4.0, 0.0),
        "kv_cache_write": ("elementwise", 2 * 576 * 2.5, 0.0),  # staged: 16 requests / 8 KVP ranks append here
        "attention": ("attention", B * (S / 8) * 576 * 0.5, B * 128 * (S / 8) * (2 * 576 + 2 * 512)),
        "lse_combine": ("elementwise", partial + B * 2048 * 2.0, 0.0),  # 16 of 128 heads combined here
        "w_uv_bmm": ("gemm", *bmm),
        "o_gemm": ("gemm", *gemm(B, H, 128 * 128 / 8)),
        "post_attention_norm": ("elementwise", B * H * 8.0, 0.0),
    })
    touched = 32 * (1 - (248 / 256) ** 16)  # 32 local experts, 16 tokens x top-8 of 256
    pairs = B * 8 / 8
    expert_weights = 3 * H * 2048 * 0.5
    assert same(table(ops["moe_ffn"]), {
        "router_gemm": ("gemm", *gemm(B, 256, H)),
        "topk_gating": ("elementwise", B * 256 * 4.0, 0.0),
        "experts": ("grouped_gemm", touched * expert_weights + 2 * pairs * (2 * H + 2 * 2048), 6.0 * pairs * H * 2048),
        "shared_gate_up_gemm": ("gemm", *gemm(B, 2 * 2048 / 8, H)),  # the shared expert over all N = 8 ranks
        "shared_swiglu": ("elementwise", B * 256 * 6.0, 0.0),
        "shared_down_gemm": ("gemm", *gemm(B, H, 2048 / 8)),
    })
    counts = layer_counts(model, 1)
    assert (int(counts["attention"]), int(counts["dense_ffn"]), int(counts["moe_ffn"])) == (61, 3, 58)


def test_combine_absent_at_kvp_1_and_mtp_multiplies_tokens():
    model = load_model("deepseek-r1")
    ops = {op.name: op for op in layer_ops(shape(model, "helix", 1, 1, 8, 1, 8))["attention"]}
    assert not bool(ops["lse_combine"].active) and float(ops["lse_combine"].bytes) == 0.0
    one = {op.name: op for op in layer_ops(shape(model, "dp_ep", 1, 1, 8, 1, 8))["attention"]}
    mtp = {op.name: op for op in layer_ops(shape(model, "dp_ep", 1, 1, 8, 1, 8, query_tokens=3))["attention"]}
    # three query tokens per request: 3x the GEMM FLOPs, the same KV read, 3x the attention FLOPs
    assert float(mtp["q_b_gemm"].flops) == pytest.approx(3 * float(one["q_b_gemm"].flops))
    assert float(mtp["attention"].read_bytes) == float(one["attention"].read_bytes)
    assert float(mtp["attention"].flops) == pytest.approx(3 * float(one["attention"].flops))


def test_dp_ep_experts_read_the_deepep_table_and_tp_the_regular_one():
    from helix.cost.op_timing import table_key, time_s
    from helix.specs import load_hardware
    model = load_model("deepseek-r1")
    fp8 = PrecisionSpec(ffn_weights="fp8_block")
    kw = {"precision": fp8}
    dp = {op.name: op for op in layer_ops(replace(shape(model, "dp_ep", 1, 1, 8, 1, 8), **kw))["moe_ffn"]}
    tp = {op.name: op for op in layer_ops(replace(shape(model, "tp", 8, 1, 1, 1, 8), **kw))["moe_ffn"]}
    assert (table_key(dp["experts"]), table_key(tp["experts"])) == ("moe_deepep.fp8_block", "moe.fp8_block")
    # SGLang has a DeepEP table, TensorRT-LLM does not: there the dp_ep experts fall back to moe.fp8_block
    sglang, trtllm = load_hardware("h200", engine="sglang"), load_hardware("h200", engine="trtllm")
    assert "moe_deepep.fp8_block" in sglang.op_model.forms and "moe_deepep.fp8_block" not in trtllm.op_model.forms
    same_op = replace(dp["experts"], table="moe")
    assert float(time_s(dp["experts"], trtllm)) == float(time_s(same_op, trtllm))
    assert float(time_s(dp["experts"], sglang)) != float(time_s(same_op, sglang))


def test_fused_combine_drops_only_the_combine_op():
    """fused_combine (a structural sensitivity variant): the KVP combine has no op of its own; nothing else moves."""
    from helix import Layout, load_hardware, simulate

    model, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    lay = Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    plain, fused = simulate(model, hw, lay, 16, 10**6), simulate(model, hw, lay, 16, 10**6, fused_combine=True)
    assert float(plain.breakdown["combine"]) > 0 and float(fused.breakdown["combine"]) == 0
    assert float(plain.ttl_s) - float(fused.ttl_s) == pytest.approx(float(plain.breakdown["combine"]), rel=1e-9)


def test_redundant_experts_mean_eplb_and_read_the_balanced_routing_tables():
    from helix.cost.op_timing import table_key, time_s
    from helix.specs import load_hardware
    model = load_model("deepseek-r1")
    fp8 = PrecisionSpec(ffn_weights="fp8_block")
    base = replace(shape(model, "dp_ep", 1, 1, 72, 1, 72), batch=np.asarray(72 * 128))
    plain = {op.name: op for op in layer_ops(replace(base, precision=fp8))["moe_ffn"]}["experts"]
    eplb = {op.name: op for op in layer_ops(replace(base, precision=fp8, redundant_experts=32))["moe_ffn"]}["experts"]
    tp = {op.name: op for op in layer_ops(replace(shape(model, "tp", 8, 1, 1, 1, 8), precision=fp8,
                                                  redundant_experts=8))["moe_ffn"]}["experts"]
    assert (table_key(plain), table_key(eplb), table_key(tp)) == (
        "moe_deepep.fp8_block", "moe_deepep_eplb.fp8_block", "moe_eplb.fp8_block")
    # SGLang's DeepEP table on H100, DeepSeek shape, 8,192 tokens of all ranks at EP 64: 0.348 ms under
    # power-law routing, 0.110 ms under uniform (3.16x); at EP 72, 9,216 tokens, the forms give 354 / 107 us
    h100 = load_hardware("h100", engine="sglang")
    ratio = float(time_s(plain, h100)) / float(time_s(eplb, h100))
    assert 3.0 < ratio < 3.6
    assert float(time_s(eplb, h100)) == pytest.approx(107e-6, rel=0.05)


def test_expert_routing_overrides_what_redundant_experts_imply():
    # balanced without redundant slots (a benchmark's synthetic routing, DeepSeek's profile; EPLB moving
    # experts without replicas), power_law with them (EPLB that does not keep up); auto follows the slots
    from helix.cost.op_timing import table_key
    model = load_model("deepseek-r1")
    base = replace(shape(model, "dp_ep", 1, 1, 128, 1, 128), batch=np.asarray(128 * 128),
                   precision=PrecisionSpec(ffn_weights="fp8_block"))

    def key(**changes):
        return table_key({op.name: op for op in layer_ops(replace(base, **changes))["moe_ffn"]}["experts"])
    assert key() == key(expert_routing="power_law") == key(redundant_experts=128, expert_routing="power_law") \
        == "moe_deepep.fp8_block"
    assert key(expert_routing="balanced") == key(redundant_experts=128) == "moe_deepep_eplb.fp8_block"
