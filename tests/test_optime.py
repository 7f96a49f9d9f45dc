"""helix.cost.optime: fitted op forms, the log-space correction grid, collectives, and the YAML contract."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from helix.cost.optime import (
    CollectiveForm,
    Correction,
    OpForm,
    OpModel,
    collective_traffic,
    op_model_from_mapping,
    op_model_to_mapping,
)
from helix.errors import HelixInputError
from helix.specs.hardware import PRESET_DIR, load_hardware

LN2 = math.log(2.0)
BW, PEAK = 1e12, 1e15  # HBM bytes/s, peak FLOP/s
FORM = OpForm(fixed_s=2e-6, hbm_efficiency=0.8, flop_efficiency=0.5)
BUMP = Correction(axes=("tokens",), knots=((0.0, 1.0, 2.0),), coefficients=(0.0, LN2, 0.0))
GRID2 = Correction(axes=("tokens", "n"), knots=((0.0, 1.0), (0.0, 1.0, 2.0)), coefficients=(0, 1, 2, 10, 20, 40))
COLL = CollectiveForm(latency_s=5e-6, latency_per_doubling_s=1e-6, bus_bytes_per_s=1e11, max_measured_group=8)


def test_opform_roofline_memory_and_compute_bound_with_fixed_cost():
    # memory-bound: 8e6 / (0.8 * 1e12) = 1e-5 > 1e9 / (0.5 * 1e15) = 2e-6  ->  2e-6 + 1e-5 = 1.2e-5
    assert FORM.time_s(8e6, 1e9, BW, PEAK, {}) == pytest.approx(1.2e-5, rel=1e-12)
    # compute-bound: 8e5 / 0.8e12 = 1e-6 < 1e10 / 0.5e15 = 2e-5  ->  2e-6 + 2e-5 = 2.2e-5
    assert FORM.time_s(8e5, 1e10, BW, PEAK, {}) == pytest.approx(2.2e-5, rel=1e-12)
    assert FORM.time_s(0.0, 0.0, BW, PEAK, {}) == pytest.approx(2e-6, rel=1e-12)  # fixed cost alone
    arr = FORM.time_s(np.array([8e6, 8e5, 0.0]), np.array([1e9, 1e10, 0.0]), BW, PEAK, {})
    assert arr.shape == (3,)
    assert arr == pytest.approx([1.2e-5, 2.2e-5, 2e-6], rel=1e-12)
    # a correction multiplies the whole time: tokens = 2 -> exp(ln 2) = 2  ->  2 * 1.2e-5 = 2.4e-5
    bumped = OpForm(fixed_s=2e-6, hbm_efficiency=0.8, flop_efficiency=0.5, correction=BUMP)
    assert bumped.time_s(8e6, 1e9, BW, PEAK, {"tokens": 2.0}) == pytest.approx(2.4e-5, rel=1e-12)
    assert bumped.time_s(8e6, 1e9, BW, PEAK, {"tokens": 4.0}) == pytest.approx(1.2e-5, rel=1e-12)  # g = 0


def test_correction_1d_knot_values_midpoint_and_clamp():
    assert math.exp(BUMP.log_ratio({"tokens": 2.0})) == pytest.approx(2.0, rel=1e-12)  # log2 2 = 1 -> ln 2
    assert BUMP.log_ratio({"tokens": math.sqrt(2.0)}) == pytest.approx(LN2 / 2, rel=1e-12)  # halfway 0 -> ln 2
    # log2 3 = 1.58496 on the falling segment: ln2 * (2 - log2 3)
    assert BUMP.log_ratio({"tokens": 3.0}) == pytest.approx(LN2 * (2 - math.log2(3)), rel=1e-12)
    # clamped, not extrapolated (extrapolation would give -2 ln2 at log2 = -2 and -8 ln2 at log2 = 10)
    assert BUMP.log_ratio({"tokens": 0.25}) == pytest.approx(0.0, abs=1e-15)
    assert BUMP.log_ratio({"tokens": 1024.0}) == pytest.approx(0.0, abs=1e-15)
    ends = Correction(axes=("tokens",), knots=((0.0, 1.0, 2.0),), coefficients=(0.3, 0.5, -0.1))
    got = ends.log_ratio({"tokens": np.array([2.0**-5, 1.0, 2.0**1.5, 4.0, 2.0**9])})
    # end, first knot, 0.5 + 0.5 * (-0.1 - 0.5) = 0.2, last knot, end
    assert got == pytest.approx([0.3, 0.3, 0.2, -0.1, -0.1], rel=1e-12)


def test_correction_2d_bilinear_weights_c_order():
    # coefficients in C order: c[i_tokens][j_n] = [[0, 1, 2], [10, 20, 40]]
    # tokens = 2^0.25 -> cell i = 0, w = 0.25; n = 2^1.5 -> cell j = 1, w = 0.5
    # .75*.5*c01 + .25*.5*c11 + .75*.5*c02 + .25*.5*c12 = .375 + 2.5 + .75 + 5 = 8.625
    assert GRID2.log_ratio({"tokens": 2**0.25, "n": 2**1.5}) == pytest.approx(8.625, rel=1e-12)
    # grid nodes are returned exactly: (i, j) = (1, 0) -> 10, (0, 2) -> 2
    assert GRID2.log_ratio({"tokens": 2.0, "n": 1.0}) == pytest.approx(10.0, rel=1e-12)
    assert GRID2.log_ratio({"tokens": 1.0, "n": 4.0}) == pytest.approx(2.0, rel=1e-12)
    # broadcast: tokens array against scalar n = 2^1.5 (between c[.][1] and c[.][2]):
    # tokens 1 -> 1.5; tokens 2 -> 30; tokens 2^0.5 -> (1.5 + 30) / 2 = 15.75
    got = GRID2.log_ratio({"tokens": np.array([1.0, 2.0, 2**0.5]), "n": 2**1.5})
    assert got == pytest.approx([1.5, 30.0, 15.75], rel=1e-12)
    assert GRID2.shape == (2, 3)


def test_correction_even_and_uneven_knots_agree():
    even = Correction(axes=("kv_tokens",), knots=((0.0, 1.0, 2.0),), coefficients=(0.2, 1.0, -0.4))
    # same piecewise-linear function with an extra knot at 0.5 holding the interpolated (0.2 + 1.0) / 2 = 0.6
    uneven = Correction(axes=("kv_tokens",), knots=((0.0, 0.5, 1.0, 2.0),), coefficients=(0.2, 0.6, 1.0, -0.4))
    assert even._step[0] == 1.0 and uneven._step[0] == 0.0  # the two lookup paths are both exercised
    x = 2.0 ** np.linspace(-1.0, 3.0, 41)
    assert uneven.log_ratio({"kv_tokens": x}) == pytest.approx(even.log_ratio({"kv_tokens": x}), rel=1e-12, abs=1e-15)
    # log2 = 1.5: 1.0 + 0.5 * (-0.4 - 1.0) = 0.3 on both
    for c in (even, uneven):
        assert c.log_ratio({"kv_tokens": 2**1.5}) == pytest.approx(0.3, rel=1e-12)
    # uneven search path alone: knots (0, 0.5, 2), coeffs (0, 1, 4); log2 = 1.25 -> 1 + (0.75 / 1.5) * 3 = 2.5
    odd = Correction(axes=("batch",), knots=((0.0, 0.5, 2.0),), coefficients=(0.0, 1.0, 4.0))
    assert odd.log_ratio({"batch": 2**1.25}) == pytest.approx(2.5, rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"axes": ("tokenz",), "knots": ((0.0, 1.0),), "coefficients": (0.0, 0.0)}, "unknown axis 'tokenz'"),
    ({"axes": ("tokens",), "knots": ((0.0, 1.0),), "coefficients": (0.0, 0.0, 0.0)}, "3 coefficients for a grid of 2"),
    ({"axes": ("tokens",), "knots": ((1.0, 1.0),), "coefficients": (0.0, 0.0)}, "increasing"),
    ({"axes": ("tokens",), "knots": ((0.0,),), "coefficients": (0.0,)}, ">= 2"),
    ({"axes": ("tokens", "n"), "knots": ((0.0, 1.0),), "coefficients": (0.0, 0.0)}, "one knot list per axis"),
])
def test_correction_rejects_bad_grids(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Correction(**kwargs)


def test_collective_traffic_factors():
    p = np.array([1, 2, 4, 8])
    # all-reduce 2 (p-1)/p: 0, 1, 1.5, 1.75; all other kinds (p-1)/p: 0, .5, .75, .875
    assert collective_traffic("all_reduce", p) == pytest.approx([0.0, 1.0, 1.5, 1.75], rel=1e-12)
    assert collective_traffic("all_to_all", p) == pytest.approx([0.0, 0.5, 0.75, 0.875], rel=1e-12)
    assert collective_traffic("all_gather", 8) == pytest.approx(0.875, rel=1e-12)


def test_collective_form_latency_doubling_and_traffic():
    n = 1e6  # n / bus = 1e6 / 1e11 = 1e-5 s
    p = np.array([2, 4, 8])
    # all_reduce: 5e-6 + 1e-6*{1,2,3} + {1, 1.5, 1.75} * 1e-5 = 1.6e-5, 2.2e-5, 2.55e-5
    assert COLL.time_s("all_reduce", n, p) == pytest.approx([1.6e-5, 2.2e-5, 2.55e-5], rel=1e-12)
    # all_to_all: 5e-6 + 1e-6*{1,2,3} + {.5, .75, .875} * 1e-5 = 1.1e-5, 1.45e-5, 1.675e-5
    assert COLL.time_s("all_to_all", n, p) == pytest.approx([1.1e-5, 1.45e-5, 1.675e-5], rel=1e-12)
    for k in (1, 2, 4, 8):
        assert float(COLL.time_s("all_to_all", n, k)) == pytest.approx(
            float(COLL.time_s("all_reduce", n, k)) - 1e-5 * (k - 1) / k, rel=1e-12, abs=1e-18)
    # empty message: latency only, 5e-6 + 1e-6 * log2 16 = 9e-6
    assert COLL.time_s("all_reduce", 0.0, 16) == pytest.approx(9e-6, rel=1e-12)
    assert COLL.time_s("all_reduce", n, 1) == 0.0  # one rank: nothing to do
    # bandwidth override and extra latency at p = 8: 5e-6 + 3e-6 + 1e-6 + 1.75 * 1e6 / 5e10 = 9e-6 + 3.5e-5 = 4.4e-5
    assert COLL.time_s("all_reduce", n, 8, bus_bytes_per_s=5e10, extra_latency_s=1e-6) == pytest.approx(
        4.4e-5, rel=1e-12)
    # correction over log2 group, knots (1, 2, 3), coeffs (0, ln2, ln2): p = 4 -> x2 -> 4.4e-5; p = 2 -> x1
    corrected = CollectiveForm(5e-6, 1e-6, 1e11, 8, correction=Correction(
        axes=("group",), knots=((1.0, 2.0, 3.0),), coefficients=(0.0, LN2, LN2)))
    assert corrected.time_s("all_reduce", n, np.array([2, 4])) == pytest.approx([1.6e-5, 4.4e-5], rel=1e-12)


def test_collective_form_experts_axis():
    # a correction over log2 experts, knots (7, 8) = 128, 256 experts, coeffs (0, ln2): 256 experts -> x2,
    # 181 experts (log2 7.5) -> x sqrt 2; a form with an experts axis refuses to guess the count
    form = CollectiveForm(5e-6, 1e-6, 1e11, 8, correction=Correction(
        axes=("group", "bytes", "experts"), knots=((1.0, 3.0), (10.0, 30.0), (7.0, 8.0)),
        coefficients=(0.0, LN2) * 4))
    plain = COLL.time_s("all_to_all", 1e6, 8)
    assert form.time_s("all_to_all", 1e6, 8, experts=256) == pytest.approx(2 * plain, rel=1e-12)
    assert form.time_s("all_to_all", 1e6, 8, experts=2 ** 7.5) == pytest.approx(np.sqrt(2) * plain, rel=1e-12)
    with pytest.raises(ValueError, match="pass experts"):
        form.time_s("all_to_all", 1e6, 8)


def test_deepep_moe_form_falls_back_to_the_regular_moe_table():
    moe = OpForm(2e-6, 0.5, 0.5, source="moe fp8_block")
    deepep = OpForm(1e-6, 0.5, 0.5, source="deepep")
    m = OpModel(engine="sglang", forms={"moe.fp8_block": moe, "moe_deepep.fp8_block": deepep}, collectives={})
    assert m.form("moe_deepep.fp8_block") is deepep
    assert m.form("moe_deepep.nvfp4") is m.form("moe.nvfp4") is moe  # nvfp4 -> fp8_block
    without = OpModel(engine="trtllm", forms={"moe.fp8_block": moe}, collectives={})
    assert without.form("moe_deepep.fp8_block") is moe


def test_eplb_moe_forms_fall_back_within_balanced_routing_never_to_skewed():
    skewed, even = OpForm(2e-6, 0.5, 0.5, source="power law"), OpForm(1e-6, 0.5, 0.5, source="balanced")
    m = OpModel(engine="trtllm", forms={"moe.fp8_block": skewed, "moe_eplb.fp8_block": even}, collectives={})
    assert m.form("moe_deepep_eplb.fp8_block") is m.form("moe_eplb.nvfp4") is even
    assert m.form("moe_deepep.nvfp4") is skewed
    with pytest.raises(KeyError, match="moe_eplb.bf16"):
        OpModel(engine="trtllm", forms={"moe.bf16": skewed}, collectives={}).form("moe_eplb.bf16")


def _model():
    forms = {"gemm.bf16": OpForm(1e-6, 0.9, 0.7, correction=GRID2, source="bf16 table"),
             "gemm.fp8": FORM, "attention.bf16": OpForm(3e-6, 0.6, 0.4, correction=BUMP)}
    colls = {"all_reduce": CollectiveForm(5e-6, 1e-6, 1e11, 8, correction=Correction(
        axes=("group", "bytes"), knots=((1.0, 3.0), (10.0, 20.0, 30.0)), coefficients=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
        source="nccl"), "all_to_all": COLL}
    return OpModel(engine="trtllm", forms=forms, collectives=colls, source="unit test")


def test_form_and_collective_lookup_fallbacks():
    m = _model()
    assert m.form("gemm.fp8") is FORM
    assert m.form("gemm.nvfp4") is FORM  # nvfp4 -> fp8_block -> fp8
    assert m.form("attention.fp4") is m.forms["attention.bf16"]  # fp4 -> fp8 -> bf16
    with pytest.raises(KeyError, match="mla.fp8"):
        m.form("mla.fp8")  # mla.fp8 -> mla.bf16, absent
    assert m.collective("custom_all_reduce") is m.collectives["all_reduce"]
    assert m.collective("all_gather") is None


def test_mapping_round_trip_through_yaml():
    m = _model()
    back = op_model_from_mapping("rt.yaml", yaml.safe_load(yaml.safe_dump(op_model_to_mapping(m))))
    assert back == m and back.forms == m.forms and back.collectives == m.collectives
    assert (back.engine, back.source) == ("trtllm", "unit test")
    assert back.forms["gemm.bf16"].source == "bf16 table" and back.collectives["all_reduce"].source == "nccl"
    feats = {"tokens": np.array([1.0, 3.0, 64.0]), "n": np.array([1.0, 2.5, 8.0])}
    for name, f in m.forms.items():
        assert back.forms[name].time_s(8e6, 1e10, BW, PEAK, feats) == pytest.approx(
            f.time_s(8e6, 1e10, BW, PEAK, feats), rel=1e-15)
    n, p = np.array([1e3, 1e6, 1e9]), np.array([2, 4, 16])
    for name, c in m.collectives.items():
        assert back.collectives[name].time_s("all_reduce", n, p) == pytest.approx(
            c.time_s("all_reduce", n, p), rel=1e-15)


def _mapping_with(mutate):
    data = op_model_to_mapping(_model())
    mutate(data)
    return data


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["forms"]["gemm.fp8"].update(fixed_s=-1e-6), r"where\.forms\.gemm\.fp8: fixed_s must be >= 0"),
    (lambda d: d["forms"]["gemm.fp8"].update(hbm_efficiency=0.0), r"where\.forms\.gemm\.fp8: .*efficiencies > 0"),
    (lambda d: d["forms"]["gemm.bf16"]["correction"].update(axes=["tokens", "nn"]),
     r"where\.forms\.gemm\.bf16\.correction: correction: unknown axis 'nn'"),
    (lambda d: d["forms"]["gemm.bf16"]["correction"].update(coefficients=[0.0] * 5),
     r"where\.forms\.gemm\.bf16\.correction: correction: 5 coefficients for a grid of 6"),
    (lambda d: d["forms"]["gemm.bf16"]["correction"].pop("knots"), r"where\.forms\.gemm\.bf16\.correction"),
    (lambda d: d["forms"]["gemm.fp8"].pop("flop_efficiency"),
     r"where: missing or malformed field \('flop_efficiency'\)"),
    (lambda d: d["collectives"]["all_to_all"].update(bus_bytes_per_s=0.0), r"where\.collectives\.all_to_all: "),
    (lambda d: d["collectives"]["all_to_all"].update(latency_s=-1.0), r"where\.collectives\.all_to_all: latency_s"),
])
def test_mapping_rejects_bad_fields(mutate, match):
    with pytest.raises(ValueError, match=match) as err:
        op_model_from_mapping("where", _mapping_with(mutate))
    assert "\n" not in str(err.value)  # one line, naming the field


def test_scaled_multiplies_each_knob():
    m = _model()
    # fixed x2: 2e-6 -> 4e-6; memory-bound op 4e-6 + 1e-5 = 1.4e-5
    f2 = m.scaled(fixed=2.0).forms["gemm.fp8"]
    assert f2.fixed_s == pytest.approx(4e-6, rel=1e-12)
    assert f2.time_s(8e6, 1e9, BW, PEAK, {}) == pytest.approx(1.4e-5, rel=1e-12)
    # hbm_efficiency x0.5: memory part 1e-5 -> 2e-5 (compute 2e-6 untouched): 2e-6 + 2e-5 = 2.2e-5
    h = m.scaled(hbm_efficiency=0.5).forms["gemm.fp8"]
    assert h.hbm_efficiency == pytest.approx(0.4, rel=1e-12)
    assert h.time_s(8e6, 1e9, BW, PEAK, {}) == pytest.approx(2.2e-5, rel=1e-12)
    # flop_efficiency x0.5 on the compute-bound op: 2e-6 + 2 * 2e-5 = 4.2e-5
    assert m.scaled(flop_efficiency=0.5).forms["gemm.fp8"].time_s(8e5, 1e10, BW, PEAK, {}) == pytest.approx(
        4.2e-5, rel=1e-12)
    # collectives: latency x2, bandwidth x2 at p = 4, n = 1e6: 2 * (5e-6 + 2e-6) + 1.5 * 1e6 / 2e11 = 2.15e-5
    s = m.scaled(collective_latency=2.0, collective_bandwidth=2.0)
    c = s.collectives["all_to_all"]
    assert (c.latency_s, c.latency_per_doubling_s, c.bus_bytes_per_s) == pytest.approx((1e-5, 2e-6, 2e11), rel=1e-12)
    assert c.max_measured_group == 8
    assert c.time_s("all_reduce", 1e6, 4) == pytest.approx(2.15e-5, rel=1e-12)
    # corrections, engine and the original model are unchanged; scaled() with no factors is the same model
    assert s.collectives["all_reduce"].correction is m.collectives["all_reduce"].correction
    assert m.scaled(fixed=3.0).forms["gemm.bf16"].correction is GRID2 and s.engine == "trtllm"
    assert m.forms["gemm.fp8"] is FORM and m.collectives["all_to_all"] is COLL
    assert m.scaled() == m


def test_load_hardware_engine_errors():
    with pytest.raises(HelixInputError, match="nonsense") as err:
        load_hardware("h100", engine="nonsense")
    assert err.value.field == "--engine"
    with pytest.raises(HelixInputError, match="ideal") as err:
        load_hardware("ideal", engine="trtllm")
    assert err.value.field == "--engine"
    ideal = load_hardware("ideal")
    assert ideal.op_model is None and ideal.engine == ""


def test_load_hardware_op_model_file(tmp_path: Path):
    """A hardware file pointing at an op-model file: loaded, its engine checked, bad fields as input errors."""
    hw_text = (PRESET_DIR / "ideal.yaml").read_text() + "\nop_models: {trtllm: om.yaml}\n"
    (tmp_path / "hw.yaml").write_text(hw_text)
    (tmp_path / "om.yaml").write_text(yaml.safe_dump(op_model_to_mapping(_model())))
    hw = load_hardware(tmp_path / "hw.yaml")
    assert hw.engine == "trtllm" and hw.op_model == _model()
    with pytest.raises(HelixInputError, match="'sglang'") as err:
        load_hardware(tmp_path / "hw.yaml", engine="sglang")
    assert err.value.field == "--engine"
    # a fit from before EPLB read the balanced-routing tables: MoE forms without their moe_eplb twin
    old = OpModel(engine="trtllm", forms={**_model().forms, "moe.fp8": FORM}, collectives={})
    (tmp_path / "om.yaml").write_text(yaml.safe_dump(op_model_to_mapping(old)))
    with pytest.raises(HelixInputError, match=r"has MoE forms but no 'moe_eplb\.fp8'.*helix calibrate"):
        load_hardware(tmp_path / "hw.yaml")
    with_eplb = OpModel(engine="trtllm", forms={**old.forms, "moe_eplb.fp8": FORM}, collectives={})
    (tmp_path / "om.yaml").write_text(yaml.safe_dump(op_model_to_mapping(with_eplb)))
    assert load_hardware(tmp_path / "hw.yaml").op_model.form("moe_deepep_eplb.nvfp4") is not None
    bad = _mapping_with(lambda d: d["forms"]["gemm.fp8"].update(fixed_s=-1))
    (tmp_path / "om.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(HelixInputError, match=r"om\.yaml\.forms\.gemm\.fp8: fixed_s") as err:
        load_hardware(tmp_path / "hw.yaml")
    assert err.value.field == "--hardware"


def test_simulate_with_a_pre_eplb_op_model_is_one_line_exit_2(cli, tmp_path: Path):
    (tmp_path / "hw.yaml").write_text((PRESET_DIR / "ideal.yaml").read_text() + "\nop_models: {trtllm: om.yaml}\n")
    old = OpModel(engine="trtllm", forms={**_model().forms, "moe.bf16": FORM}, collectives={})
    (tmp_path / "om.yaml").write_text(yaml.safe_dump(op_model_to_mapping(old)))
    code, out, err = cli("simulate", "--hardware", str(tmp_path / "hw.yaml"), "--batch", "1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--hardware: op model" in err and "no 'moe_eplb.bf16'" in err and "helix calibrate --from-perf-db" in err
