"""The CLI's precision defaults: a config's quantization_config, FP8 on Hopper (FP4 named there an error),
and the warning for a context beyond max_position_embeddings."""

import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
BASE = ("simulate", "--json", "--strategy", "tp", "--gpus", "8", "--batch", "1", "--context", "2K")  # later flags win


def precision_of(cli, *argv):
    code, out, err = cli(*BASE, *argv)
    assert code == 0, err
    return json.loads(out)


def test_quantization_config_sets_weights_and_flags_win(cli):
    kimi = str(DATA / "kimi-k2.config.json")
    w_default = precision_of(cli, "--model", kimi)["weight_bytes_per_gpu"]
    w_fp8b = precision_of(cli, "--model", kimi, "--attention-weights-precision", "fp8_block",
                          "--ffn-weights-precision", "fp8_block")["weight_bytes_per_gpu"]
    w_fp4 = precision_of(cli, "--model", kimi, "--ffn-weights-precision", "fp4")["weight_bytes_per_gpu"]
    w_all = precision_of(cli, "--model", kimi, "--precision", "fp4")["weight_bytes_per_gpu"]
    assert w_default == w_fp8b and w_fp4 < w_default and w_all < w_fp4


def test_context_beyond_max_position_embeddings_warns(cli):
    code, out, err = cli("simulate", "--model", str(DATA / "qwen3-32b.config.json"), "--strategy", "tp",
                         "--gpus", "8", "--batch", "1", "--context", "64K")
    assert code == 0 and out
    assert err == "helix: warning: --context 64,000 exceeds Qwen/Qwen3-32B's max_position_embeddings (40,960)\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--precision", "fp4"], "--precision: fp4 needs FP4 tensor cores and h200 has none"),
    (["--kv-cache-precision", "nvfp4"], "--kv-cache-precision: nvfp4 needs FP4 tensor cores and h200 has none"),
])
def test_fp4_on_hopper_is_an_error(cli, argv, message):
    code, out, err = cli(*BASE, "--hardware", "h200", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_hopper_defaults_to_fp8(cli):
    default = precision_of(cli, "--hardware", "h200", "--model", "llama-3.1-405b")
    fp8 = precision_of(cli, "--hardware", "h200", "--model", "llama-3.1-405b", "--precision", "fp8")
    assert default == fp8
    assert precision_of(cli, "--model", "llama-3.1-405b") == precision_of(cli, "--model", "llama-3.1-405b",
                                                                           "--precision", "fp4")


def test_unknown_quantization_and_missing_window_are_one_line_errors(cli, tmp_path):
    cfg = json.loads((DATA / "gpt-oss-120b.config.json").read_text())
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "awq"}}))
    code, out, err = cli(*BASE, "--model", str(bad))
    assert (code, out) == (2, "")
    assert err == ("helix simulate: error: config.json.quantization_config.quant_method: unsupported 'awq'; "
                   "allowed: fp8, mxfp4\n")
    bad.write_text(json.dumps({**cfg, "sliding_window": 0}))
    code, out, err = cli(*BASE, "--model", str(bad))
    assert (code, out) == (2, "")
    assert err == "helix simulate: error: config.json.sliding_window: must be >= 1 with windowed layers, got 0\n"


def test_warning_only_once_inputs_are_good(cli):
    qwen = str(DATA / "qwen3-32b.config.json")
    code, out, err = cli(*BASE, "--model", qwen, "--context", "64K", "--hardware", "h100", "--precision", "fp4")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "warning" not in err  # the error alone
    code, out, err = cli("sweep", "--model", qwen, "--context", "64K", "--max-gpus", "8")
    assert code == 0 and "helix: warning: --context 64,000 exceeds" in err
