"""The layouts production runs: TP x EP, DP+EP with TPF, redundant experts, two-batch overlap, MTP,
uneven widths rejected by default, and their CLI flags (bad input: one line, exit 2)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from helix import Layout, load_hardware, load_model, simulate
from helix.cost.inventory import layer_ops
from helix.cost.messages import step_messages
from helix.cost.op_timing import time_s
from helix.cost.op_types import Shape
from helix.errors import HelixInputError
from helix.layout import check_layout_for_model
from helix.specs.precision import PrecisionSpec
from helix.step_overlap import PHASE_GROUP, tbo_exposed_s

R1 = load_model("deepseek-r1")
IDEAL = load_hardware("ideal")
LAYER_TERMS = ("norms", "qkv_projection", "rope_kv_write", "attention", "combine", "o_projection", "ffn",
               "moe_router", "moe_experts", "moe_shared_experts")


def test_tp_with_expert_parallel_moe():
    # "TP8 EP8": attention TP 8 (the latent cache whole on every rank), experts 256 / 8 = 32 whole per GPU
    r = simulate(R1, IDEAL, Layout.tp(8, ep=8), 8, 10**4, PrecisionSpec.uniform("fp8"))
    r_tp = simulate(R1, IDEAL, Layout.tp(8), 8, 10**4, PrecisionSpec.uniform("fp8"))
    assert float(r.kv_bytes_per_gpu) == float(r_tp.kv_bytes_per_gpu) == 61 * 8 * 10**4 * 576  # fp8: 1 B x 576
    # the routed experts are the same bytes per GPU either way (1/8 of all), so weights agree
    assert float(r.weight_bytes_per_gpu) == pytest.approx(float(r_tp.weight_bytes_per_gpu), rel=1e-12)
    assert "moe_tp_all_reduce" in r.comm_total_s


def test_redundant_experts_add_whole_expert_slots():
    # EP8 with R = 32: (256 + 32) / 8 = 36 expert slots per GPU instead of 32; at FP8 each expert is
    # 3 x 7168 x 2048 = 44,040,192 B; 4 more on each of the 58 MoE layers = 10,217,324,544 B
    p = PrecisionSpec.uniform("fp8")
    base = simulate(R1, IDEAL, Layout.dp_ep(8), 8, 1000, p)
    more = simulate(R1, IDEAL, Layout.dp_ep(8), 8, 1000, p, redundant_experts=32)
    assert float(more.weight_bytes_per_gpu - base.weight_bytes_per_gpu) == 10_217_324_544
    with pytest.raises(HelixInputError, match=r"ep: must divide num_experts \+ redundant_experts \(259\), got 8"):
        simulate(R1, IDEAL, Layout.dp_ep(8), 8, 1000, p, redundant_experts=3)


# SGLang's decode TBO stages (batch_overlap/operations_strategy.py), by the inventory's op names
PREPARE = ("input_norm", "qkv_a_gemm", "q_a_norm", "kv_a_norm", "q_b_gemm", "w_uk_bmm", "rope")
CORE = ("kv_cache_write", "attention", "w_uv_bmm", "o_gemm", "post_attention_norm", "router_gemm", "topk_gating")
SHARED = ("shared_gate_up_gemm", "shared_swiglu", "shared_down_gemm")


def _stage_s(shape, hw, names):
    ops = [op for group in layer_ops(shape).values() for op in group if op.name in names]
    assert sorted(op.name for op in ops) == sorted(names)
    return sum(float(time_s(op, hw)) for op in ops)


@pytest.mark.parametrize("bandwidth_scale", [1.0, 1e-3])  # compute-bound, and communication-bound
@pytest.mark.parametrize("sm_d, sm_c", [(0.0, 0.0), (0.18, 0.12)])  # all of the exchange hides; Hopper's shares
def test_two_batch_overlap_is_the_five_stage_decode_schedule(bandwidth_scale, sm_d, sm_c):
    # TBO: every layer op runs twice at half the batch; per micro-batch and MoE layer the dispatch
    # (counts + rows) hides behind its own shared expert and the other micro-batch's attention prepare,
    # the combine behind the other's attention core; the last layer's second micro-batch hides its
    # dispatch behind its shared expert alone and its combine behind nothing. Only the RDMA in flight
    # hides: the share sm of each exchange that its send / receive kernels hold the SMs is always exposed
    hw = replace(IDEAL, link_bytes_per_s_per_direction=IDEAL.link_bytes_per_s_per_direction * bandwidth_scale,
                 moe_dispatch_sm_fraction=sm_d, moe_combine_sm_fraction=sm_c)
    p, lay, B = PrecisionSpec.uniform("fp8"), Layout.dp_ep(8), 64
    tbo = simulate(R1, hw, lay, B, 2000, p, tbo=True)
    half = simulate(R1, hw, lay, B // 2, 2000, p)
    for term in LAYER_TERMS:
        assert float(tbo.breakdown[term]) == pytest.approx(2 * float(half.breakdown[term]), rel=1e-12), term
    layer_comm = {k: 2 * float(v) for k, v in half.comm_total_s.items() if PHASE_GROUP[k] != "step"}
    for k, v in layer_comm.items():
        assert float(tbo.comm_total_s[k]) == pytest.approx(v, rel=1e-12)
    moe_layers = 58
    shape = Shape(R1, p, "dp_ep", *(np.asarray(x) for x in (1, 1, 8, 1, 8, 1, B // 2, 2000)))
    prepare, core, shared = (_stage_s(shape, hw, names) for names in (PREPARE, CORE, SHARED))
    dispatch = (layer_comm["moe_dispatch_counts"] + layer_comm["moe_dispatch_all_to_all"]) / (2 * moe_layers)
    combine = layer_comm["moe_combine_all_to_all"] / (2 * moe_layers)
    e_d = sm_d * dispatch + max((1 - sm_d) * dispatch - shared - prepare, 0.0)
    e_c = sm_c * combine + max((1 - sm_c) * combine - core, 0.0)
    last_d = sm_d * dispatch + max((1 - sm_d) * dispatch - shared, 0.0)
    exposed = 2 * moe_layers * (e_d + e_c) + last_d - e_d + combine - e_c
    assert sum(float(tbo.comm_exposed_s[k]) for k in layer_comm) == pytest.approx(exposed, rel=1e-9)
    assert (e_d + e_c > 0) == (bandwidth_scale < 1 or sm_d > 0)
    with pytest.raises(HelixInputError, match="tbo: two-batch overlap needs the dp_ep strategy"):
        simulate(R1, IDEAL, Layout.helix(kvp=8, ep=8), 8, 2000, p, tbo=True)


def test_tbo_exposed_share_hand_cases():
    # 100 us of exchange, 20 % of it on the SMs: 80 us in flight; behind 50 us of compute 30 us of it
    # stays exposed (50 in all); behind 90 us all of it hides and the 20 us on the SMs stay
    assert tbo_exposed_s(100e-6, 0.2, 50e-6) == pytest.approx(50e-6)
    assert tbo_exposed_s(100e-6, 0.2, 90e-6) == pytest.approx(20e-6)
    assert tbo_exposed_s(100e-6, 0.0, 90e-6) == pytest.approx(10e-6)
    # half-efficient overlap (eta = 0.5): half of the shorter of flight and compute is lost as well
    assert tbo_exposed_s(100e-6, 0.2, 50e-6, 0.5) == pytest.approx(20e-6 + 80e-6 + 0.5 * 50e-6 - 50e-6)
    np.testing.assert_allclose(tbo_exposed_s(np.array([100e-6, 40e-6]), 0.25, 50e-6), [50e-6, 10e-6])


def test_dispatch_counts_ride_in_the_measured_dispatch():
    # DeepEP's low-latency dispatch carries the per-expert counts: with a measured dispatch form the
    # counts message costs nothing of its own, but its bytes stay in the traffic (the runtime sends them)
    p, lay = PrecisionSpec.uniform("fp8"), Layout.dp_ep(8)
    measured = simulate(R1, load_hardware("h200", engine="sglang"), lay, 64, 2000, p)
    assert float(measured.comm_total_s["moe_dispatch_counts"]) == 0.0
    assert float(simulate(R1, IDEAL, lay, 64, 2000, p).comm_total_s["moe_dispatch_counts"]) > 0
    msgs = {m.phase: m for m in step_messages(R1, p, "dp_ep", 1, 1, 8, 1, 8, 1, 64, 1)}
    assert float(msgs["moe_dispatch_counts"].n_bytes) == 256 * 8


def test_mtp_yields_accepted_tokens_per_step():
    p, lay = PrecisionSpec.uniform("fp8"), Layout.dp_ep(8)
    plain = simulate(R1, IDEAL, lay, 64, 2000, p)
    mtp = simulate(R1, IDEAL, lay, 64, 2000, p, mtp_tokens=1, mtp_acceptance=1.8)
    ttl = float(mtp.ttl_s)
    assert float(mtp.tokens_per_s_per_user) == pytest.approx(1.8 / ttl, rel=1e-12)
    assert float(mtp.tokens_per_s_per_gpu) == pytest.approx(64 * 1.8 / (ttl * 8), rel=1e-12)
    assert float(mtp.breakdown["mtp_draft"]) > 0 and float(plain.breakdown["mtp_draft"]) == 0
    # verifying 2 tokens per request reads every weight and KV byte once, as 1 token does
    assert ttl < 2 * float(plain.ttl_s)
    with pytest.raises(HelixInputError, match=r"mtp_acceptance: must be in \[1, mtp_tokens \+ 1 = 2\]"):
        simulate(R1, IDEAL, lay, 64, 2000, p, mtp_tokens=1, mtp_acceptance=2.5)


def test_uneven_layouts_are_rejected_unless_allowed():
    lay = Layout.dp_ep(3, tpf=3)  # the expert width 2048 over TPF = 3
    with pytest.raises(HelixInputError, match="the expert FFN width 2048 does not divide over tpf = 3"):
        check_layout_for_model(lay, R1)
    with pytest.raises(HelixInputError, match="--allow-uneven"):
        simulate(R1, IDEAL, lay, 3, 1000)
    check_layout_for_model(lay, R1, allow_uneven=True)
    assert float(simulate(R1, IDEAL, lay, 3, 1000, allow_uneven=True).ttl_s) > 0


@pytest.mark.parametrize(("flags", "fields"), [
    (["--strategy", "tp", "--gpus", "8", "--ep", "8"], (8, 1, 1, 1, 8)),
    (["--strategy", "tp", "--gpus", "8"], (8, 1, 1, 8, 1)),
    (["--strategy", "tp", "--gpus", "8", "--tpf", "2"], (8, 1, 1, 2, 4)),
    (["--strategy", "dp_ep", "--gpus", "8"], (1, 1, 8, 1, 8)),
    (["--strategy", "dp_ep", "--gpus", "8", "--tpf", "2"], (1, 1, 8, 2, 4)),
    (["--strategy", "helix", "--gpus", "16", "--tpa", "1", "--ep", "8"], (1, 16, 1, 2, 8)),
])
def test_cli_layouts(cli, flags, fields):
    code, out, _ = cli("simulate", "--context", "4K", "--batch", "16", "--precision", "fp8", *flags,
                       "--json")
    assert code == 0
    d = json.loads(out)
    assert tuple(d["layout_fields"][k] for k in ("tpa", "kvp", "dp", "tpf", "ep")) == fields
    lay = Layout(**{k: d["layout_fields"][k] for k in ("tpa", "kvp", "dp", "tpf", "ep", "pp", "strategy")})
    want = simulate(R1, load_hardware("gb200-nvl72"), lay, 16, 4000, PrecisionSpec.uniform("fp8"))
    assert d["ttl_s"] == float(want.ttl_s) and d["engine"] == "trtllm"


def test_cli_production_options_match_the_api(cli):
    code, out, _ = cli("simulate", "--hardware", "h100", "--strategy", "dp_ep", "--gpus", "8", "--context",
                       "2000", "--batch", "64", "--precision", "fp8", "--moe-combine-precision", "bf16",
                       "--redundant-experts", "32", "--tbo", "--mtp-tokens", "1", "--mtp-acceptance", "1.7", "--json")
    assert code == 0
    d = json.loads(out)
    p = PrecisionSpec(**{**{k: "fp8" for k in PrecisionSpec.__dataclass_fields__}, "moe_combine": "bf16"})
    want = simulate(R1, load_hardware("h100"), Layout.dp_ep(8), 64, 2000, p, redundant_experts=32, tbo=True,
                    mtp_tokens=1, mtp_acceptance=1.7)
    assert d["ttl_s"] == float(want.ttl_s) and np.isclose(d["tokens_per_s_per_user"], 1.7 / d["ttl_s"])
    assert d["options"] == {"redundant_experts": 32, "expert_routing": "auto", "allow_uneven": False, "tbo": True,
                            "mtp_tokens": 1, "mtp_acceptance": 1.7}
    # the routing named: balanced without redundant experts is what 32 of them imply, on the DeepEP path
    code, out, _ = cli("simulate", "--hardware", "h100", "--strategy", "dp_ep", "--gpus", "8", "--context", "2000",
                       "--batch", "64", "--precision", "fp8", "--expert-routing", "balanced", "--json")
    assert code == 0
    want = simulate(R1, load_hardware("h100"), Layout.dp_ep(8), 64, 2000, PrecisionSpec.uniform("fp8"),
                    expert_routing="balanced")
    skewed = simulate(R1, load_hardware("h100"), Layout.dp_ep(8), 64, 2000, PrecisionSpec.uniform("fp8"))
    d = json.loads(out)
    assert d["ttl_s"] == float(want.ttl_s) and d["options"]["expert_routing"] == "balanced"
    # 8 tokens per rank: the balanced rows touch more experts, so more weight bytes, than power-law's
    assert float(want.breakdown["moe_experts"]) > float(skewed.breakdown["moe_experts"])
    with pytest.raises(HelixInputError, match="expert_routing: unknown 'even'; allowed: auto, power_law, balanced"):
        simulate(R1, IDEAL, Layout.dp_ep(8), 64, 2000, expert_routing="even")


@pytest.mark.parametrize(("argv", "message"), [
    (["--strategy", "tp", "--gpus", "64", "--tpa", "8"], "--gpus: conflicts with --tpa 8"),
    (["--strategy", "tp", "--gpus", "8", "--kvp", "2"], "--kvp: --strategy tp has no KV or data parallelism"),
    (["--strategy", "tp", "--gpus", "8", "--ep", "4", "--tpf", "4"], "--tpf: --tpf 4 x --ep 4 = 16 conflicts"),
    (["--strategy", "tp", "--gpus", "8", "--ep", "3"], "--ep: must divide N = 8"),
    (["--strategy", "tp", "--gpus", "8", "--pp", "2"], "--pp: --strategy tp has one stage"),
    (["--strategy", "tp_pp", "--gpus", "8"], "--pp: --strategy tp_pp needs --pp >= 2"),
    (["--strategy", "dp_ep", "--gpus", "8", "--tpa", "2"], "--tpa: --strategy dp_ep runs attention data-parallel"),
    (["--strategy", "dp_ep", "--gpus", "8", "--dp", "4"], "--gpus: conflicts with --dp 4"),
    (["--strategy", "medha", "--ep", "2"], "--ep: --strategy medha ties the FFN"),
    (["--strategy", "helix", "--gpus", "8", "--kvp", "4"], "--gpus: conflicts with --kvp 4"),
    (["--strategy", "helix", "--gpus", "8", "--tpa", "3"], "--gpus: must be a multiple of --tpa x --dp = 3"),
    (["--tbo"], "--tbo: two-batch overlap runs DP attention + EP"),
    (["--strategy", "dp_ep", "--gpus", "8", "--no-hopb"], "--no-hopb: HOP-B is Helix's overlap"),
    (["--mtp-acceptance", "1.5"], "--mtp-acceptance: needs --mtp-tokens"),
    (["--mtp-tokens", "2", "--mtp-acceptance", "3.5"], "--mtp-acceptance: must be in [1, --mtp-tokens + 1 = 3]"),
    (["--mtp-tokens", "-1"], "--mtp-tokens: must be an integer >= 0"),
    (["--redundant-experts", "-2"], "--redundant-experts: must be an integer >= 0"),
    (["--expert-routing", "uniform"], "--expert-routing: unknown 'uniform'; allowed: auto, power_law, balanced"),
    (["--model", "llama-3.1-405b", "--expert-routing", "balanced"], "--expert-routing: routes tokens to experts"),
    (["--strategy", "dp_ep", "--gpus", "8", "--redundant-experts", "3"], "ep: must divide num_experts + redundant"),
    (["--engine", "tensorrt"], "--engine: unknown engine 'tensorrt'"),
    (["--hardware", "ideal", "--engine", "sglang"], "--engine: hardware 'ideal' has no measured op model"),
    (["--moe-dispatch-precision", "fp7"], "moe_dispatch"),
    (["--strategy", "dp_ep", "--gpus", "3", "--tpf", "3"], "does not divide over tpf = 3; use a divisor or --allow"),
])
def test_bad_layout_flags_are_one_line_exit_2(cli, argv, message):
    code, out, err = cli("simulate", "--context", "1K", "--batch", "8", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_allow_uneven_keeps_the_layout(cli):
    code, out, _ = cli("simulate", "--context", "1K", "--batch", "3", "--strategy", "dp_ep", "--gpus", "3",
                       "--tpf", "3", "--allow-uneven", "--json")
    assert code == 0 and json.loads(out)["layout_fields"]["tpf"] == 3


def test_sweep_and_best_flags(cli):
    code, _, err = cli("best", "--ttl-budget-ms", "50", "--strategies", "helix", "--tbo")
    assert code == 2 and "--tbo: two-batch overlap applies to dp_ep points" in err
    code, _, err = cli("sweep", "--model", "llama-3.1-405b", "--max-gpus", "4", "--expert-routing", "balanced")
    assert code == 2 and err.count("\n") == 1 and "--expert-routing: routes tokens to experts" in err
    # the routing reaches every point of a search
    answers = [json.loads(cli("best", "--model", "deepseek-r1", "--hardware", "h100", "--engine", "sglang",
                              "--context", "2000", "--strategies", "dp_ep", "--max-gpus", "16", "--ttl-budget-ms",
                              "100", "--precision", "fp8", "--expert-routing", routing, "--json")[1])
               for routing in ("power_law", "balanced")]
    assert [a["options"]["expert_routing"] for a in answers] == ["power_law", "balanced"]
    best = [a["most_tokens_per_s_per_gpu"] for a in answers]
    assert best[0]["tokens_per_s_per_gpu"] != best[1]["tokens_per_s_per_gpu"]
    base = cli("sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4", "--quiet")[1]
    uneven = cli("sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4", "--quiet",
                 "--allow-uneven")[1]
    grid = base.split(" points evaluated")[0].split("\n")[-1]
    assert int(grid.replace(",", "")) % 35 == 0  # 35 layouts (test_search.py)
    more = uneven.split(" points evaluated")[0].split("\n")[-1]
    assert int(more.replace(",", "")) // 36 == int(grid.replace(",", "")) // 35  # 36 with N=3, DP=3 kept


def _simulate_layout(*argv) -> Layout:
    from helix.cli import build_parser
    from helix.commands.layout_args import layout_from_args

    return layout_from_args(build_parser().parse_args(["simulate", *argv]))


def test_the_layout_flags_with_no_width_given():
    """simulate's default width is 1 (one GPU); under dp_ep --ep (x --tpf) alone names N, as in production."""
    assert _simulate_layout() == Layout.helix(kvp=1)
    assert _simulate_layout("--tpa", "8") == Layout.helix(kvp=1, tpa=8)
    assert _simulate_layout("--gpus", "64", "--tpf", "8") == Layout.helix(kvp=64, tpf=8, ep=8)
    assert _simulate_layout("--strategy", "dp_ep") == Layout.dp_ep(1)
    assert _simulate_layout("--strategy", "dp_ep", "--ep", "8") == Layout.dp_ep(8)
    assert _simulate_layout("--strategy", "dp_ep", "--ep", "4", "--tpf", "2") == Layout.dp_ep(8, tpf=2)
    assert _simulate_layout("--strategy", "tp") == Layout.tp(1)
