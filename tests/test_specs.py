"""Model and hardware specs: presets, HF config import, sources on every number, bad input."""

from pathlib import Path

import pytest
import yaml

from helix import HelixInputError, load_hardware, load_model, parse_tokens
from helix.specs.hardware import SOURCED_FIELDS
from helix.specs.hardware import preset_names as hw_presets
from helix.specs.precision import BYTES_PER_ELEMENT

HF = Path(__file__).parent / "data"  # the public config.json files, shipped with the tests


def test_llama_presets():
    real, paper = load_model("llama-3.1-405b"), load_model("llama-405b-paper")
    assert (real.ffn_dim, paper.ffn_dim) == (53248, 65536)
    assert real.total_params == pytest.approx(405.85e9, rel=1e-3)  # hardware_models.md §3.2
    assert real.attention_params == 570_425_344  # 2*H*Q*Hsz + 2*H*K*Hsz
    assert real.kv_cache_bytes_per_token(2.0) == 516_096  # 504 KiB in BF16


def test_deepseek_preset():
    m = load_model("deepseek-r1")
    assert m.is_mla and m.is_moe and m.cache_heads == 1
    assert m.num_moe_layers == 58 and m.num_dense_ffn_layers == 3
    assert m.kv_cache_bytes_per_token(2.0) == 70_272  # 576 x 2 B x 61 layers
    assert m.total_params == pytest.approx(671.0e9, rel=2e-3)
    assert m.attention_params == pytest.approx(187e6, rel=0.01)


@pytest.mark.parametrize(("file", "preset"), [("llama-3.1-405b.config.json", "llama-3.1-405b"),
                                              ("deepseek-v3.config.json", "deepseek-r1")])
def test_hf_config_import_matches_preset(file, preset):
    got, want = load_model(HF / file), load_model(preset)
    checkpoint = ("attention_weights_format", "ffn_weights_format", "max_context")  # the config's, not the preset's
    for field in want.__slots__:
        if field not in ("name", "source", *checkpoint):
            assert getattr(got, field) == getattr(want, field), field


def test_hf_config_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(HelixInputError, match="config.json: is not valid JSON"):
        load_model(bad)
    bad.write_text('{"model_type": "gpt2", "hidden_size": 8}')
    with pytest.raises(HelixInputError, match="config.json.model_type: unsupported 'gpt2'"):
        load_model(bad)
    bad.write_text('{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2}')
    with pytest.raises(HelixInputError, match="config.json.num_hidden_layers: missing"):
        load_model(bad)


def test_every_hardware_number_has_a_source():
    for name in hw_presets():
        hw = load_hardware(name)
        fitted = {"op_models"} if hw.op_models else set()  # the measured op model, where the preset has one
        assert set(hw.sources) == set(SOURCED_FIELDS) | fitted, name  # every number, and the all-reduce algorithms
        nvls = ("nvls",) if hw.nvls_latency_s > 0 else ()
        assert hw.all_reduce_algorithms == ("ring", "one_shot", "two_shot") + nvls, name  # all they have
        assert {"hbm_efficiency", "flop_efficiency", "link_efficiency", "kernel_launch_s"} <= hw.empirical


def test_ideal_is_the_app_a_roofline():
    hw = load_hardware("ideal")
    assert hw.hbm_bytes_per_s == 8e12
    assert (hw.hbm_efficiency, hw.flop_efficiency, hw.kernel_launch_s, hw.sync_latency_s) == (1, 1, 0, 0)


def _hw_yaml(tmp_path, **changes):
    data = yaml.safe_load((Path(__file__).parents[1] / "src/helix/specs/presets/hardware/h100.yaml").read_text())
    data.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del data[k]
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_user_hardware_yaml(tmp_path):
    hw = load_hardware(_hw_yaml(tmp_path, hbm_bytes_per_s=1.0e12))
    assert hw.hbm_bytes_per_s == 1.0e12
    with pytest.raises(HelixInputError, match=r"hw.yaml.hbm_bytes_per_s: missing"):
        load_hardware(_hw_yaml(tmp_path, hbm_bytes_per_s=None))
    with pytest.raises(HelixInputError, match=r"hbm_capacity_bytes: must be > 0, got -5"):
        load_hardware(_hw_yaml(tmp_path, hbm_capacity_bytes=-5))
    with pytest.raises(HelixInputError, match=r"hbm_efficiency: must be <= 1"):
        load_hardware(_hw_yaml(tmp_path, hbm_efficiency=1.5))
    with pytest.raises(HelixInputError, match=r"hw.yaml.warp_speed: unknown field"):
        load_hardware(_hw_yaml(tmp_path, warp_speed=9))


def test_optional_hardware_fields(tmp_path):
    # left out: no step overhead, every all-reduce algorithm the hardware has (NVLS where its latency > 0)
    hw = load_hardware(_hw_yaml(tmp_path, step_overhead_s=None, all_reduce_algorithms=None))
    assert hw.step_overhead_s == 0.0 and hw.all_reduce_algorithms == ("ring", "one_shot", "two_shot", "nvls")
    hw = load_hardware(_hw_yaml(tmp_path, all_reduce_algorithms=None, nvls_latency_s=0.0))
    assert hw.all_reduce_algorithms == ("ring", "one_shot", "two_shot")
    hw = load_hardware(_hw_yaml(tmp_path, all_reduce_algorithms=["ring"], step_overhead_s=1e-3))
    assert hw.all_reduce_algorithms == ("ring",) and hw.step_overhead_s == 1e-3
    for bad, match in (([], "must be a non-empty list"), ("ring", "must be a non-empty list"),
                       (["ring", "tree"], "unknown algorithm 'tree'"), (["ring", "ring"], "lists an algorithm twice")):
        with pytest.raises(HelixInputError, match=r"hw.yaml.all_reduce_algorithms: " + match):
            load_hardware(_hw_yaml(tmp_path, all_reduce_algorithms=bad))
    with pytest.raises(HelixInputError, match=r"step_overhead_s: must be >= 0"):
        load_hardware(_hw_yaml(tmp_path, step_overhead_s=-1.0))


def test_comm_overlap_efficiency_field(tmp_path):
    assert load_hardware(_hw_yaml(tmp_path, comm_overlap_efficiency=None)).comm_overlap_efficiency == 1.0  # default
    for eta in (0, 0.25, 1.0):
        assert load_hardware(_hw_yaml(tmp_path, comm_overlap_efficiency=eta)).comm_overlap_efficiency == eta
    hw = load_hardware(_hw_yaml(tmp_path, comm_overlap_efficiency={"value": 0.3, "source": "measured",
                                                                    "empirical": True}))
    assert hw.comm_overlap_efficiency == 0.3 and "comm_overlap_efficiency" in hw.empirical
    for bad, match in ((1.5, "must be <= 1, got 1.5"), (-0.1, "must be >= 0, got -0.1"), ("lots", "must be a number")):
        with pytest.raises(HelixInputError, match=r"^hw.yaml.comm_overlap_efficiency: " + match) as err:
            load_hardware(_hw_yaml(tmp_path, comm_overlap_efficiency=bad))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", ["moe_dispatch_sm_fraction", "moe_combine_sm_fraction"])
def test_moe_exchange_sm_fraction_fields(tmp_path, field):
    # optional: left out, nothing of the exchange runs on the SMs (all of it can hide); 0 to 1 allowed
    assert getattr(load_hardware(_hw_yaml(tmp_path, **{field: None})), field) == 0.0
    assert getattr(load_hardware(_hw_yaml(tmp_path, **{field: 0.18})), field) == 0.18
    assert getattr(load_hardware("h100"), field) in (0.18, 0.12) and field in load_hardware("h100").sources
    for bad, match in ((1.5, "must be <= 1, got 1.5"), (-0.1, "must be >= 0, got -0.1")):
        with pytest.raises(HelixInputError, match=rf"^hw.yaml.{field}: " + match) as err:
            load_hardware(_hw_yaml(tmp_path, **{field: bad}))
        assert "\n" not in str(err.value)


def test_scale_out_collective_bandwidth_scale_field(tmp_path):
    hw = load_hardware(_hw_yaml(tmp_path, scale_out_collective_bandwidth_scale=None))
    assert hw.scale_out_collective_bandwidth_scale == 1.0  # default
    with pytest.raises(HelixInputError, match=r"^hw.yaml.scale_out_collective_bandwidth_scale: must be > 0"):
        load_hardware(_hw_yaml(tmp_path, scale_out_collective_bandwidth_scale=0.0))


def test_precision_formats():
    assert BYTES_PER_ELEMENT["fp4"] == 0.5
    assert BYTES_PER_ELEMENT["nvfp4"] == 0.5625  # 4.5 bits
    assert BYTES_PER_ELEMENT["mxfp4"] == 0.53125  # 4.25 bits


@pytest.mark.parametrize(("text", "tokens"), [("1M", 10**6), ("128K", 128_000), ("1000000", 10**6),
                                              ("1.5M", 1_500_000), ("1Mi", 2**20), ("64k", 64_000)])
def test_parse_tokens(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["", "M", "1X", "-5", "0", "1.00001K"])
def test_parse_tokens_rejects(text):
    with pytest.raises(HelixInputError, match="--context"):
        parse_tokens(text)
