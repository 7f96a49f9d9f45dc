"""The committed op models (specs/presets/hardware/op_models): which measured table each form comes from,
and the knots its correction has. Runs without the perf-db extra: it reads the committed files only."""

import numpy as np


def test_elementwise_ops_are_timed_by_one_fused_kernel_for_every_engine():
    # SGLang's scale_matrix rows time an eager four-kernel PyTorch expression (5.7 us for a 1 x 32 matrix
    # on H100); both engines' forms come from TensorRT-LLM's one-kernel table (1.29 us for the same shape)
    from helix.cost import kernels
    from helix.specs import load_hardware

    for hw in ("gb200-nvl72", "b200", "h200", "h100"):
        sglang = load_hardware(hw, engine="sglang").op_model.forms["elementwise"]
        assert sglang == load_hardware(hw, engine="trtllm").op_model.forms["elementwise"], hw
        assert "/quantize/trtllm/" in sglang.source, hw
    form = load_hardware("h100", engine="sglang").op_model.forms["elementwise"]
    one_row = form.time_s(kernels.elementwise_bytes(1, 32, 2.0, 1.0), 0.0, 3.35e12, 0.989e15,
                          {k: np.float64(v) for k, v in kernels.elementwise_features(1, 32).items()})
    assert 1.0e-6 < float(one_row) < 1.6e-6


def test_attention_correction_has_a_knot_at_every_measured_head_count():
    from helix.specs import load_hardware

    form = load_hardware("h200", engine="trtllm").op_model.forms["attention.bf16"]
    knots = dict(zip(form.correction.axes, form.correction.knots, strict=True))
    # the table's query-head counts per rank: 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128
    assert [round(2 ** k) for k in knots["q_heads"]] == [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64,
                                                         96, 128]
    assert np.diff(knots["batch"]).max() <= 2.0 + 1e-6 and np.diff(knots["kv_tokens"]).max() <= 2.0 + 1e-6


def test_eplb_forms_come_from_the_balanced_routing_rows():
    from helix.specs import load_hardware

    for hw in ("gb200-nvl72", "b200", "h200", "h100"):
        for engine in ("trtllm", "sglang"):
            forms = load_hardware(hw, engine=engine).op_model.forms
            for d in ("bf16", "fp8", "fp8_block", "nvfp4"):
                for name, routing in ((f"moe.{d}", "power_law_1.01"), (f"moe_eplb.{d}", "balanced")):
                    if name in forms:
                        assert f"distribution == '{routing}'" in forms[name].source, (hw, engine, name)
            assert "moe_eplb.fp8_block" in forms, (hw, engine)
            if engine == "sglang":
                assert "distribution == 'uniform'" in forms["moe_deepep_eplb.fp8_block"].source, hw
                assert "distribution == 'power_law_1.01'" in forms["moe_deepep.fp8_block"].source, hw
