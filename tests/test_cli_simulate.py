"""`helix simulate / models / hardware`: output, JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from helix import Layout, load_hardware, load_model, simulate


def test_simulate_json_matches_python_api(cli):
    code, out, _ = cli("simulate", "--model", "deepseek-r1", "--hardware", "gb200-nvl72", "--context", "1M",
                       "--batch", "16", "--strategy", "helix", "--kvp", "64", "--tpa", "1", "--tpf", "8", "--ep", "8",
                       "--json")
    assert code == 0
    d = json.loads(out)
    want = simulate(load_model("deepseek-r1"), load_hardware("gb200-nvl72"),
                    Layout.helix(kvp=64, tpa=1, tpf=8, ep=8), 16, 10**6)
    assert d["ttl_s"] == float(want.ttl_s)
    assert d["num_gpus"] == 64 and d["feasible"] is True and d["infeasible_reason"] is None
    assert d["tokens_per_s_per_user"] == pytest.approx(1 / d["ttl_s"])
    assert d["tokens_per_s_per_gpu"] == pytest.approx(16 / (d["ttl_s"] * 64))
    assert sum(d["breakdown"].values()) == pytest.approx(d["ttl_s"], rel=1e-12)
    assert d["context_tokens"] == 1_000_000


def test_simulate_table_and_no_hopb(cli):
    code, out, _ = cli("simulate", "--model", "llama-405b-paper", "--kvp", "8", "--tpa", "8", "--batch", "32")
    assert code == 0 and "HOP-B on" in out and "kvp_all_to_all" in out and "TTL" in out
    # On `ideal` (no launch or collective latency) the all-to-all is all bandwidth and HOP-B hides it;
    # on the GPU presets it is latency-bound and a chunk's extra merge launch outweighs what it hides.
    args = ("simulate", "--model", "llama-405b-paper", "--kvp", "8", "--tpa", "8", "--batch", "32", "--json",
            "--hardware", "ideal")
    on, off = json.loads(cli(*args)[1]), json.loads(cli(*args, "--no-hopb")[1])
    a2a_on, a2a_off = on["communication"]["kvp_all_to_all"], off["communication"]["kvp_all_to_all"]
    assert a2a_off["exposed_s"] == a2a_off["total_s"]
    assert a2a_on["exposed_s"] < 0.05 * a2a_off["exposed_s"]
    assert on["ttl_s"] - off["ttl_s"] == pytest.approx(a2a_on["exposed_s"] - a2a_off["exposed_s"], rel=1e-9)


def test_infeasible_is_reported(cli):
    code, out, _ = cli("simulate", "--model", "llama-3.1-405b", "--strategy", "tp", "--gpus", "8",
                       "--batch", "64", "--json")
    d = json.loads(out)
    assert code == 0 and d["feasible"] is False and d["infeasible_reason"] == "kv_exceeds_hbm"


def test_models_and_hardware_lists(cli):
    code, out, _ = cli("models")
    assert code == 0 and "llama-405b-paper" in out and "65536" in out and "256/8" in out
    code, out, _ = cli("hardware")
    assert code == 0 and "gb200-nvl72" in out and "ideal" in out


def test_models_and_hardware_json_lists(cli):
    code, out, _ = cli("models", "--json")
    models = {m["name"]: m for m in json.loads(out)}
    r1 = models["deepseek-r1"]
    assert code == 0 and (r1["attention"], r1["layers"], r1["hidden_dim"], r1["query_heads"]) == ("mla", 61, 7168, 128)
    assert (r1["experts"], r1["experts_per_token"], r1["kv_heads"]) == (256, 8, 1)
    assert r1["kv_bytes_per_token_fp4"] == 61 * (512 + 64) * 0.5  # latent + rope per layer at FP4
    assert models["llama-405b-paper"]["experts"] == 0
    code, out, _ = cli("hardware", "--json")
    hw = {h["name"]: h for h in json.loads(out)}
    assert code == 0 and hw["gb200-nvl72"]["scale_up_domain_gpus"] == 72 and "trtllm" in hw["gb200-nvl72"]["engines"]
    assert set(hw["h100"]) >= {"peak_flops_per_s_fp8", "hbm_capacity_bytes", "hbm_bytes_per_s", "description"}
    # the network between domains: NDR 400 Gb/s InfiniBand = 50 GB/s per GPU per direction (presets/networks.yaml)
    assert (hw["h200"]["scale_out_network"], hw["h200"]["scale_out_bytes_per_s_per_direction"]) == ("ndr400-ib", 50e9)
    code, out, _ = cli("hardware")
    h200 = next(line for line in out.splitlines() if line.startswith("h200 "))
    assert code == 0 and "scale-out GB/s" in out and "ndr400-ib 50" in h200


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "gpt-9"], "--model: unknown model 'gpt-9'"),
    (["--hardware", "tpu"], "--hardware: unknown hardware 'tpu'"),
    (["--batch", "0"], "--batch: must be >= 1, got 0"),
    (["--batch", "-3"], "--batch: must be >= 1, got -3"),
    (["--context", "lots"], "--context: expected a token count"),
    (["--kvp", "6", "--tpa", "8", "--tpf", "64"], "--tpf: must divide N = 48 (TPF x EP = N), got 64"),
    (["--model", "llama-3.1-405b", "--kvp", "2", "--tpa", "3"], "tpa: must divide the KV heads (8), got 3"),
    (["--precision", "fp3"], "precision: unknown format 'fp3'"),
    (["--expert-imbalance", "0.5"], "--expert-imbalance: must be a finite number >= 1"),
    (["--expert-imbalance", "inf"], "--expert-imbalance: must be a finite number >= 1, got inf"),
    (["--batch", "2147483648"], "argument --batch: must be an integer below 2^31 (= 2,147,483,648), got 2147483648"),
    (["--batch", str(10**23)], "argument --batch: must be an integer below 2^31"),
    (["--mtp-tokens", "1e3"], "argument --mtp-tokens: must be an integer, got '1e3'"),
])
def test_bad_input_is_one_line_exit_2(cli, argv, message):
    code, out, err = cli("simulate", *argv, exits=True)  # some are argparse's own one-line errors
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_bad_config_json_and_yaml(cli, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "bert"}')
    code, _, err = cli("simulate", "--model", str(bad))
    assert code == 2 and "config.json.model_type: unsupported 'bert'" in err
    hw = tmp_path / "hw.yaml"
    hw.write_text("name: x\nhbm_bytes_per_s: -1\n")
    code, _, err = cli("simulate", "--hardware", str(hw))
    assert code == 2 and err.count("\n") == 1 and "hw.yaml." in err


def test_entry_point_bad_input_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "helix", "simulate", "--batch", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "helix simulate: error: --batch: must be >= 1, got 0"
