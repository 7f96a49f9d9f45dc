"""`helix --version`, "file not found" for a --model path that does not exist, and the structured layout
fields beside the layout string in `simulate --json` and `best --json`."""

import json

import pytest


def test_version(cli):
    code, out, _ = cli("--version", exits=True)  # argparse's --version action exits after printing
    assert code == 0 and out.startswith("helix ") and out.strip().split()[1][0].isdigit()


@pytest.mark.parametrize("command", [("simulate",), ("sweep", "--max-gpus", "2"), ("best", "--tpot-ms", "20")])
@pytest.mark.parametrize("path", ["missing/config.json", "nope.yaml", "/no/such/dir/model"])
def test_missing_model_file_says_file_not_found(tmp_path, cli, command, path):
    code, out, err = cli(*command, "--model", str(tmp_path / path) if path[0] != "/" else path)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "error: --model: file not found:" in err and "deepseek-r1" in err


def test_model_folder_and_unknown_name(tmp_path, cli):
    code, _, err = cli("simulate", "--model", str(tmp_path))
    assert code == 2 and "is a folder" in err
    code, _, err = cli("simulate", "--model", "no-such-preset")
    assert code == 2 and "unknown model 'no-such-preset'" in err


def test_structured_layout_fields(cli):
    code, out, _ = cli("simulate", "--strategy", "helix", "--kvp", "8", "--tpf", "4", "--ep", "2", "--json")
    d = json.loads(out)
    assert d["layout"] == "helix(tpa=1, kvp=8, dp=1, tpf=4, ep=2, pp=1)"
    assert d["layout_fields"] == {"strategy": "helix", "tpa": 1, "kvp": 8, "dp": 1, "tpf": 4, "ep": 2, "pp": 1}
    code, out, _ = cli("best", "--total-gpus", "8", "--tpot-ms", "30", "--top", "2", "--json")
    d = json.loads(out)
    for pick in (d["most_tokens_per_s_per_gpu"], d["most_users"], *d["top"], d["helix_vs_baseline"]["helix"]):
        f = pick["layout_fields"]
        assert pick["layout"] == f"{f['strategy']}(" + ", ".join(
            f"{k}={f[k]}" for k in ("tpa", "kvp", "dp", "tpf", "ep", "pp")) + ")"
