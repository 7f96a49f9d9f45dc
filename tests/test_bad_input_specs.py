"""Bad values at the edge of every input: one line naming the field, exit 2, the same rule from a flag,
a YAML preset, a Hugging Face config or the Python API."""

import json
from pathlib import Path

import pytest

from helix import load_model
from helix.cli import main
from helix.errors import HelixInputError
from helix.specs import parse_tokens

HF = Path(__file__).resolve().parents[2] / "shared" / "data" / "hf-configs" / "llama-3.1-405b.config.json"
B200 = Path(__file__).resolve().parents[1] / "src" / "helix" / "specs" / "presets" / "hardware" / "b200.yaml"


def one_line_exit_2(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400", "1e30", str(2**40 + 1)])
def test_token_counts_finite_and_bounded(capsys, text):
    with pytest.raises(HelixInputError, match="finite token count of at most 2\\^40"):
        parse_tokens(text)
    one_line_exit_2(capsys, ["simulate", "--batch", "1", f"--context={text}"], "--context: must be a finite token")
    assert parse_tokens(str(2**40)) == 2**40


@pytest.mark.parametrize(("content", "fragment"), [
    (b"\xff\xfeh\x00i\x00", "is not UTF-8 text (byte 0xff at offset 0)"),  # UTF-16
    (b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 9)"),  # Latin-1
    (b"a: " + b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
])
@pytest.mark.parametrize("flag", ["--model", "--hardware"])
def test_spec_files_not_utf8_or_too_deep(capsys, tmp_path, content, fragment, flag):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    one_line_exit_2(capsys, ["simulate", flag, str(path), "--batch", "1"], fragment)


@pytest.mark.skipif(not HF.exists(), reason="the shared Hugging Face configs are not beside this checkout")
@pytest.mark.parametrize(("change", "fragment"), [
    ({"hidden_size": float("nan")}, "hidden_size: must be finite, got nan"),
    ({"hidden_size": 1e30}, "hidden_size: must be <= 2,147,483,647"),
    ({"num_attention_heads": 0}, "num_attention_heads: must be >= 1, got 0"),
    ({"num_attention_heads": "abc"}, "num_attention_heads: must be a JSON number, got the string 'abc'"),
    ({"num_attention_heads": "32"}, "num_attention_heads: must be a JSON number, got the string '32'"),
])
def test_hf_config_values_checked_before_any_arithmetic(tmp_path, change, fragment):
    cfg = json.loads(HF.read_text())
    cfg.update(change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(HelixInputError, match=fragment.replace("(", r"\(")):
        load_model(path)


def test_a_rate_too_small_to_be_a_device(capsys, tmp_path):
    path = tmp_path / "hw.yaml"
    text = "\n".join("hbm_bytes_per_s: 1.0e-300" if line.startswith("hbm_bytes_per_s:") else line
                     for line in B200.read_text().splitlines())
    path.write_text(text.replace("op_models/", str(B200.parent / "op_models") + "/"))
    one_line_exit_2(capsys, ["simulate", "--hardware", str(path), "--batch", "1"],
                    "hbm_bytes_per_s: must be > 1000, got 1e-300")


@pytest.mark.parametrize("argv", [["simulate", "--strategy", "dp_ep", "--gpus", "8", "--batch", "8"],
                                  ["best", "--ttl-budget-ms", "50", "--max-gpus", "8"]])
def test_redundant_experts_at_most_the_expert_count(capsys, argv):
    one_line_exit_2(capsys, [*argv, "--model", "deepseek-r1", "--redundant-experts", "257"],
                    "redundant_experts: must be at most the expert count (256)")


def test_expert_imbalance_on_a_dense_model_is_an_error(capsys):
    one_line_exit_2(capsys, ["simulate", "--model", "llama-3.1-405b", "--batch", "1", "--expert-imbalance", "2"],
                    "--expert-imbalance: routes tokens to experts; 'llama-3.1-405b' is dense")


def test_a_preset_network_and_its_bandwidth_agree(capsys, tmp_path):
    # b200 names ndr400-ib (50 GB/s per GPU per direction); 100 GB/s is xdr800-ib's, not its own
    path = tmp_path / "hw.yaml"
    text = "\n".join("scale_out_bytes_per_s_per_direction: 100.0e9" if line.startswith("scale_out_bytes_per_s_per")
                     else line for line in B200.read_text().splitlines())
    path.write_text(text.replace("op_models/", str(B200.parent / "op_models") + "/"))
    one_line_exit_2(capsys, ["simulate", "--hardware", str(path), "--batch", "1"],
                    "scale_out_bytes_per_s_per_direction: is 1e+11 but scale_out_network 'ndr400-ib' carries 5e+10")
