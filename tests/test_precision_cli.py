"""`helix precision`'s bad flags: one line naming the flag, exit 2, nothing written; checked before torch is needed."""

import pytest

from helix.cli import main
from helix.runtime.precision_spec import Study, SyntheticKV


@pytest.mark.parametrize(("argv", "flag"), [
    (["--kvp", "3,4"], "--kvp"),
    (["--kvp", "1,x"], "--kvp"),
    (["--kvp", "0,2"], "--kvp"),
    (["--kv-formats", "fp9"], "--kv-formats"),
    (["--payload-formats", "mxfp4"], "--payload-formats"),
    (["--contexts", "4K,abc"], "--contexts"),
    (["--contexts", "32", "--kvp", "64"], "--contexts"),
    (["--contexts", "4K,,8K"], "--contexts"),
    (["--contexts", "4K,4K"], "--contexts"),
    (["--contexts", "1G"], "--contexts"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_flag_is_one_line_and_exit_2(tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    assert main(["precision", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"helix precision: error: {flag}:"), err
    assert not out.exists()


def test_argparse_rejects_a_non_integer_seed_count(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["precision", "--seeds", "two"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"head_dim": 48}, "head_dim"), ({"query_heads": 0}, "query_heads"),
    ({"outlier_channels": 200}, "outlier_channels"),
    ({"outlier_scale": 0.0}, "outlier_scale"), ({"chunk_tokens": 0}, "chunk_tokens"),
])
def test_synthetic_data_fields_are_checked(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        SyntheticKV(**kwargs)


def test_study_fields_are_checked():
    with pytest.raises(ValueError, match="^seeds:"):
        Study(seeds=())
    with pytest.raises(ValueError, match="^kvps:"):
        Study(kvps=(2, 3))


def test_without_torch_the_command_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    import sys

    import helix.runtime

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ModuleNotFoundError
    for name in ("precision_error", "quantise", "attention"):  # as if never imported in this process
        monkeypatch.delitem(sys.modules, f"helix.runtime.{name}", raising=False)
        monkeypatch.delattr(helix.runtime, name, raising=False)
    assert main(["precision", "--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["helix precision: error: torch: not installed; helix precision needs it: "
                   'pip install -e ".[runtime]"']
    assert not (tmp_path / "out").exists()
