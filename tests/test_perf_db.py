"""The perf-DB fit (helix.validation.perf_db): synthetic rows with known parameters are recovered, the
held-out split is a pure function of the shape, the committed op models are what a refit gives, and
``helix calibrate --from-perf-db`` rejects bad flags with one line and exit code 2."""

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("scipy")  # the perf-db extra brings it with aiconfigurator-core

from helix.cost.optime import CollectiveForm, Correction, collective_traffic  # noqa: E402
from helix.validation.perf_db import fit  # noqa: E402

HAVE_PACKAGE = importlib.util.find_spec("aiconfigurator_core") is not None


def test_op_base_recovers_known_parameters():
    # t = 3 us + max(bytes / (0.8 x 8 TB/s), flops / (0.6 x 2.5 PF/s)) on a grid spanning both regimes
    rng = np.random.default_rng(0)
    b = 10 ** rng.uniform(4, 9, 400)
    f = 10 ** rng.uniform(6, 13, 400)
    t = 3e-6 + np.maximum(b / (0.8 * 8e12), f / (0.6 * 2.5e15))
    fixed, eta_m, eta_f = fit.fit_op_base(b, f, t, 8e12, 2.5e15)
    assert (fixed, eta_m, eta_f) == pytest.approx((3e-6, 0.8, 0.6), rel=1e-5)


def test_collective_base_recovers_known_parameters():
    # all-reduce: 6 us + 1.5 us per doubling + 2 (p - 1) / p x n / 300 GB/s
    p = np.repeat([2.0, 4.0, 8.0], 12)
    n = np.tile(2.0 ** np.arange(10, 34, 2), 3)
    t = 6e-6 + 1.5e-6 * np.log2(p) + collective_traffic("all_reduce", p) * n / 3e11
    lat, per_doubling, bw = fit.fit_collective_base("all_reduce", n, p, t)
    assert (lat, per_doubling, bw) == pytest.approx((6e-6, 1.5e-6, 3e11), rel=1e-5)
    form = CollectiveForm(lat, per_doubling, bw, max_measured_group=8)
    assert form.time_s("all_reduce", n, p) == pytest.approx(t, rel=1e-5)


def test_correction_fit_reproduces_a_grid_function():
    # log ratio multilinear on the knots: the fit's coefficients are the node values (to the 4-decimal rounding)
    knots = ((0.0, 2.0, 4.0), (0.0, 3.0))
    nodes = np.array([[0.1, -0.2], [0.3, 0.0], [-0.1, 0.25]])
    truth = Correction(("tokens", "n"), knots, tuple(nodes.ravel()))
    rng = np.random.default_rng(1)
    x = [rng.uniform(0, 4, 600), rng.uniform(0, 3, 600)]
    r = truth.log_ratio({"tokens": 2.0 ** x[0], "n": 2.0 ** x[1]})
    got = fit.fit_correction(("tokens", "n"), knots, x, r, smoothness=1e-6, ridge=1e-9)
    assert np.asarray(got.coefficients) == pytest.approx(nodes.ravel(), abs=2e-4)


def test_design_matrix_matches_the_interpolant():
    knots = ((0.0, 1.0, 3.0), (0.0, 2.0, 4.0, 6.0))
    c = np.linspace(-0.5, 0.5, 12)
    corr = Correction(("batch", "kv_tokens"), knots, tuple(c))
    x = [np.array([-1.0, 0.5, 2.0, 3.0, 9.0]), np.array([0.0, 1.0, 5.0, 6.0, 3.3])]
    a = fit.design_matrix(x, knots)
    assert np.asarray(a.sum(axis=1)).ravel() == pytest.approx(1.0)
    assert a @ c == pytest.approx(corr.log_ratio({"batch": 2.0 ** x[0], "kv_tokens": 2.0 ** x[1]}), rel=1e-12)


def test_holdout_is_a_function_of_the_shape_only():
    m = np.arange(1, 2001)
    k = (m * 7) % 97 + 1
    mask = fit.holdout_mask(m, k)
    order = np.random.default_rng(2).permutation(m.size)
    assert np.array_equal(fit.holdout_mask(m[order], k[order]), mask[order])
    assert 0.17 < mask.mean() < 0.23  # one row in five
    assert fit.choose_knots(np.log2([1, 16384]), 1.25) == tuple(round(v, 4) for v in np.linspace(0, 14, 13))


@pytest.mark.skipif(not HAVE_PACKAGE, reason="needs the perf-db extra (aiconfigurator-core)")
def test_knots_at_each_value_and_by_spacing():
    x = np.log2([2048, 2816, 2816, 4096, 6144])
    assert fit.choose_knots(x, fit.EACH_VALUE) == tuple(round(float(v), 4) for v in np.log2([2048, 2816, 4096, 6144]))
    assert fit.choose_knots(np.log2([4, 64]), 2.0) == (2.0, 4.0, 6.0)  # 4 octaves, one knot per 2
    assert fit.choose_knots(np.log2([4, 64]), (8, 16)) == (2.0, 3.0, 4.0, 6.0)
    assert fit.choose_knots(np.log2([8, 8]), fit.EACH_VALUE) is None  # one value: no axis


@pytest.mark.skipif(not HAVE_PACKAGE, reason="needs the perf-db extra")
def test_glitch_filter_drops_rows_slower_than_twice_a_bigger_message():
    from helix.validation.perf_db.glitches import without_collective_glitches
    from helix.validation.perf_db.tables import Rows

    group = np.array([8, 8, 8, 8, 16])
    n = np.array([100, 200, 400, 800, 100])
    t = np.array([10.0, 25.0, 11.0, 30.0, 50.0])  # 25 > 2 x 11 (a bigger message): a glitch; 16: its own group
    rows = without_collective_glitches(Rows("x", "", {"group": group, "n_bytes": n}, t))
    assert rows.seconds.tolist() == [10.0, 11.0, 30.0, 50.0]
    assert rows.columns["n_bytes"].tolist() == [100, 400, 800, 100]


def test_moe_glitch_filter_bounds_time_by_twice_the_work_at_half_the_width():
    from helix.validation.perf_db.glitches import MOE_KEYS, without_moe_glitches
    from helix.validation.perf_db.tables import Rows

    # (tokens, hidden, inter, topk, experts, tp, ep): TP 1 x EP 8 against TP 2 x EP 8 and TP 1 x EP 16
    shapes = [(64, 4096, 1024, 10, 512, 1, 8), (64, 4096, 1024, 10, 512, 2, 8), (64, 4096, 1024, 10, 512, 1, 16),
              (128, 4096, 1024, 10, 512, 1, 8), (128, 4096, 1024, 10, 512, 2, 8)]
    t = np.array([2597.0, 214.8, 300.0, 800.0, 215.6])  # 2597 > 4 x 214.8: dropped; 800 <= 4 x 215.6: kept
    columns = {k: np.array([s[i] for s in shapes]) for i, k in enumerate(MOE_KEYS)}
    rows = without_moe_glitches(Rows("x", "", columns, t))
    assert rows.seconds.tolist() == [214.8, 300.0, 800.0, 215.6]
    assert rows.columns["moe_tp_size"].tolist() == [2, 1, 1, 2]


@pytest.mark.skipif(not HAVE_PACKAGE, reason="needs the perf-db extra")
def test_moe_tables_are_read_at_power_law_routing_and_at_balanced_with_eplb():
    # SGLang's DeepEP MoE table on H200 at EP 8, FP8 block, 8 tokens of all ranks: 0.216 ms under
    # power_law_1.01 (aiconfigurator's DeepSeek default) where uniform routing measures 0.131 ms
    from helix.validation.perf_db import forms, tables

    specs = {s.name: s for s in forms.table_specs()}
    assert specs["moe_deepep.fp8_block"].args == ("fp8_block", "power_law_1.01")
    assert specs["moe_deepep_eplb.fp8_block"].args == ("fp8_block", "uniform")
    assert specs["moe.fp8_block"].args == ("fp8_block", "power_law_1.01")
    assert specs["moe_eplb.nvfp4"].args == ("nvfp4", "balanced")
    skewed = tables.moe_deepep("h200_sxm", "sglang", *specs["moe_deepep.fp8_block"].args)
    even = tables.moe_deepep("h200_sxm", "sglang", *specs["moe_deepep_eplb.fp8_block"].args)
    for rows, ms in ((skewed, 0.216), (even, 0.131)):
        c = rows.columns
        at = (c["num_tokens"] == 8) & (c["moe_ep_size"] == 8) & (c["num_experts"] == 256)
        assert rows.seconds[at].tolist() == pytest.approx([ms * 1e-3], abs=0.5e-6)
    assert "distribution == 'power_law_1.01'" in skewed.filters
    assert "distribution == 'balanced'" in tables.moe("h200_sxm", "sglang", "fp8_block", "balanced").filters


def test_committed_op_models_are_what_a_refit_gives():
    from helix.specs import load_hardware
    from helix.validation.perf_db import build

    tables = {"mla_bmm_pre.bf16", "elementwise", "custom_all_reduce", "moe_dispatch"}
    model, fits = build.build_op_model("gb200-nvl72", "trtllm", only=tables)
    committed = load_hardware("gb200-nvl72", engine="trtllm").op_model
    for name in ("mla_bmm_pre.bf16", "elementwise"):
        assert model.forms[name] == committed.forms[name], name
    for name in ("custom_all_reduce", "moe_dispatch"):
        assert model.collectives[name] == committed.collectives[name], name
    assert {f.table for f in fits} == tables
    assert all(f.median_abs_error <= 0.10 and f.p90_abs_error <= 0.25 for f in fits)


@pytest.mark.parametrize(("argv", "message"), [
    (["--from-perf-db", "--quick"], "--quick: measures this machine; it cannot be combined with --from-perf-db"),
    (["--from-perf-db", "--out", "p.yaml"], "--out: measures this machine"),
    (["--from-perf-db", "--hardware", "h800"], "--hardware: no measured tables for 'h800'"),
    (["--from-perf-db", "--engine", "vllm"], "--engine: unknown engine 'vllm'; allowed: trtllm, sglang, all"),
    (["--hardware", "h200"], "--hardware: only applies with --from-perf-db"),
    (["--json"], "--json: only applies with --from-perf-db"),
])
def test_calibrate_from_perf_db_bad_flags(cli, argv, message):
    code, out, err = cli("calibrate", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_calibrate_from_perf_db_without_the_package(cli, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "aiconfigurator_core" else real(name, *a))
    code, out, err = cli("calibrate", "--from-perf-db", "--out-dir", str(tmp_path / "m"))
    assert code == 2 and out == "" and 'pip install -e ".[perf-db]"' in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_module_check_without_the_package(monkeypatch, capsys):
    import sys

    from helix.validation.perf_db import modules

    monkeypatch.setitem(sys.modules, "aiconfigurator_core", None)  # import raises ImportError
    assert modules.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and 'pip install -e ".[perf-db]"' in err


def test_op_model_file_is_json_with_sources():
    from helix.validation.perf_db.build import OP_MODEL_DIR

    data = json.loads((OP_MODEL_DIR / "gb200-nvl72.trtllm.json").read_text())
    assert data["hardware"] == "gb200-nvl72" and data["engine"] == "trtllm"
    for name, form in {**data["forms"], **data["collectives"]}.items():
        assert "aiconfigurator-core 0.12.0" in form["source"] and "held out" in form["source"], name


@pytest.mark.skipif(not HAVE_PACKAGE, reason="needs the perf-db extra")
def test_elementwise_rows_come_from_the_fused_kernel_table():
    from helix.validation.perf_db import tables

    rows = tables.elementwise("h100_sxm", "sglang")
    assert rows.path.startswith("h100_sxm/quantize/trtllm/")
    c = rows.columns
    at = (c["m"] == 1) & (c["k"] == 128)
    assert rows.seconds[at].tolist() == pytest.approx([1.29e-6], abs=0.01e-6)



@pytest.mark.skipif(not HAVE_PACKAGE, reason="needs the perf-db extra")
def test_module_tables_check_the_composition(capsys):
    # the simulator's attention block, op by op, against aiconfigurator's whole-module rows (no fit):
    # TensorRT-LLM's DSA module on B200 within ~10 % at the median; SGLang's MLA module on Hopper ~1.9x
    # below the composition, whose FP8-KV attention form is SGLang's FA3 FP8 table (4.3x its BF16 rows)
    from helix.validation.perf_db import modules

    assert modules.main(["--json"]) == 0
    found = {(c["hardware"], c["engine"], c["table"]): c for c in json.loads(capsys.readouterr().out)["modules"]}
    assert len(found) == 12
    assert 0.85 < found["b200", "trtllm", "dsa_module"]["median_ratio"] < 1.0
    assert 1.0 < found["h200", "sglang", "dsa_module"]["median_ratio"] < 1.3
    assert 1.7 < found["h100", "sglang", "mla_module"]["median_ratio"] < 2.1
    assert found["h200", "trtllm", "dsa_module"]["median_ratio"] < 0.5
