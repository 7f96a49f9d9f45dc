"""``helix run``: plain (spawned CPU workers) and under torchrun; bad input exits 2 with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from helix.cli import main

# B=2, tiny-llama: a2a n = B * Q/TPA * (Hsz + 1) * 4 = 2 * 8 * 11 * 4 per layer, 3 layers per step
A2A_BYTES_PER_STEP = 3 * 2 * 8 * 11 * 4
ARGS = ["run", "--model", "tiny-llama", "--kvp", "2", "--tpa", "1", "--batch", "2", "--prompt-len", "21",
        "--new-tokens", "4"]


@pytest.mark.slow
def test_helix_run_spawns_workers_and_reports(capsys):
    assert main([*ARGS, "--hopb"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    assert summary["hopb_same_tokens"] is True
    a2a = next(r for r in summary["collectives"] if r["phase"] == "kvp_all_to_all")
    assert (a2a["calls"], a2a["bytes"], a2a["simulator_bytes"]) == (3, A2A_BYTES_PER_STEP, A2A_BYTES_PER_STEP)
    # 21 prompt + 3 fed-back tokens in blocks of 16: rank 0 holds block 0, rank 1 holds 8 tokens of block 1
    assert summary["kv_tokens_per_rank"] == [16, 8]
    assert "tokens match Hugging Face generate (single device): yes" in out
    assert "decode step ms (rank 0):" in out and "HOP-B: decode step mean" in out


@pytest.mark.slow
def test_helix_run_deepseek_dp_ep_reports_expert_load(capsys):
    argv = ["run", "--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "2", "--batch", "2",
            "--prompt-len", "9", "--new-tokens", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    assert (summary["strategy"], summary["dp"], summary["ep"]) == ("dp_ep", 2, 2)
    phases = {r["phase"]: r for r in summary["collectives"]}
    assert set(phases) == {"moe_dispatch_counts", "moe_dispatch_all_to_all", "moe_combine_all_to_all"}
    assert phases["moe_dispatch_counts"]["bytes"] == 3 * 16 * 8  # E int64 per MoE layer
    assert phases["moe_dispatch_all_to_all"]["bytes"] == 3 * 1 * 4 * 64 * 4  # B_loc k H 4 per MoE layer
    assert "(mean over 2 ranks: routing-dependent)" in out
    # 2 decode steps x 2 requests x top-4 per MoE layer
    assert [sum(row) for row in summary["expert_load_decode"]] == [16, 16, 16]
    assert "expert load over 2 decode steps" in out and "  layer 1: " in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "gpt-17"], "helix run: error: --model: unknown runtime model 'gpt-17'"),
    (["--tpa", "3", "--kvp", "1"], "helix run: error: tpa: must divide the KV heads (4), got 3"),
    (["--batch", "0"], "helix run: error: --batch: must be >= 1, got 0"),
    (["--kvp", "4", "--tpf", "3"], "helix run: error: --tpf: must divide N = 4 (TPF x EP = N), got 3"),
    (["--kvp", "2", "--gpus", "4"], "helix run: error: --gpus: conflicts with --kvp 2 x --tpa 1 = 2"),
    (["--ep", "2"], "helix run: error: ep: must be 1 for the dense model 'tiny-llama', got 2"),
    (["--strategy", "dp_ep", "--gpus", "2", "--batch", "2"],
     "helix run: error: strategy: must be helix for the dense model 'tiny-llama' (dp_ep needs an MoE model)"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--kvp", "2"],
     "helix run: error: --kvp: --strategy dp_ep runs attention data-parallel only (tpa = kvp = 1); drop --kvp"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "4", "--ep", "2"],
     "helix run: error: --ep: the runtime's dp_ep moves whole experts (EP = N = 4, TPF = 1), got 2"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "4", "--tpf", "2"],
     "helix run: error: --tpf: the runtime's dp_ep moves whole experts (EP = N = 4, TPF = 1), got 2"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "4", "--batch", "6"],
     "helix run: error: --batch: must be a multiple of N (=4) under dp_ep"),
    (["--model", "tiny-deepseek", "--kvp", "2", "--tpa", "2"],
     "helix run: error: tpa: helix needs tpa <= KV heads (1) (MLA has one latent KV head, so TPA must be 1)"),
    (["--model", "tiny-deepseek", "--kvp", "4", "--ep", "3"],
     "helix run: error: --ep: must divide N = 4 (TPF x EP = N), got 3"),
    (["--ownership", "striped"], "helix run: error: --ownership: unknown rule 'striped'; allowed: round_robin"),
    # every flag does something: one the layout ignores is an error naming both
    (["--hopb-chunks", "4"], "helix run: error: --hopb-chunks: only applies with --hopb (the HOP-B run)"),
    (["--hopb", "--hopb-chunks", "0"], "helix run: error: --hopb-chunks: must be >= 1, got 0"),
    (["--hopb", "--hopb-chunks", "8", "--batch", "4"], "helix run: error: --hopb-chunks: must be <= --batch (4)"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "2", "--batch", "2", "--hopb"],
     "helix run: error: --hopb: overlaps Helix's KVP all-to-all, which --strategy dp_ep does not have"),
    (["--kvp", "1", "--tpa", "2", "--hopb"],
     "helix run: error: --hopb: overlaps the KVP all-to-all, which --kvp 1 does not have"),
    (["--kvp", "1", "--tpa", "2", "--ownership", "contiguous"],
     "helix run: error: --ownership: decides which KVP rank holds each KV token; with --kvp 1 one rank"),
    (["--model", "tiny-deepseek", "--strategy", "dp_ep", "--gpus", "2", "--batch", "2", "--block-tokens", "8"],
     "helix run: error: --block-tokens: decides which KVP rank holds each KV token; with --strategy dp_ep"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_job_timeout_under_torchrun_is_refused_not_ignored(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "--job-timeout-s", "600"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helix run: error: --job-timeout-s: applies to spawned workers only; under torchrun")
    assert err.count("\n") == 1


def test_defaults_equal_to_the_ignored_value_are_accepted():
    """--ownership / --block-tokens at their defaults with one KVP rank: nothing to refuse."""
    from helix.cli import build_parser
    from helix.commands.layout_args import layout_from_args
    from helix.commands.run_args import check_combinations

    args = build_parser().parse_args(["run", "--kvp", "1", "--tpa", "2", "--ownership", "round_robin",
                                      "--block-tokens", "16"])
    assert check_combinations(args, layout_from_args(args), under_torchrun=False) is None


def test_run_reads_its_layout_with_simulates_parser_at_its_own_default_width():
    """One flags -> Layout parser (helix.commands.layout_args); run's default is KVP 2 (dp_ep: N = 2), and
    under dp_ep --ep alone names N."""
    from helix.cli import build_parser
    from helix.commands.layout_args import layout_from_args
    from helix.layout import Layout

    def layout(*argv):
        return layout_from_args(build_parser().parse_args(["run", *argv]))

    assert layout() == Layout.helix(kvp=2)
    assert layout("--tpa", "2") == Layout.helix(kvp=2, tpa=2)
    assert layout("--gpus", "4", "--tpa", "2") == Layout.helix(kvp=2, tpa=2)
    assert layout("--kvp", "4", "--ep", "2") == Layout.helix(kvp=4, ep=2)
    assert layout("--strategy", "dp_ep") == Layout.dp_ep(2)
    assert layout("--strategy", "dp_ep", "--ep", "4") == Layout.dp_ep(4)
    assert layout("--strategy", "dp_ep", "--gpus", "4") == Layout.dp_ep(4)


def test_helix_starts_without_importing_torch():
    code = "import sys, helix.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_helix_run_under_torchrun():
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "helix", *ARGS],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    assert summary["kv_tokens_per_rank"] == [16, 8]


@pytest.mark.parametrize("argv, message", [
    (["--batch", str(2**31 - 1)], "helix run: error: --batch: the prompt alone, --batch 2147483647 x --prompt-len "
                                  "256 tokens, needs 4398.4 GB, more than this machine's"),
    (["--prompt-len", str(10**23)], "helix run: error: argument --prompt-len: must be an integer below 2^31"),
    (["--seed", str(2**64)], "helix run: error: argument --seed: must be an integer from 0 to 2^64 - 1"),
    (["--seed", "-1"], "helix run: error: argument --seed: must be an integer from 0 to 2^64 - 1"),
])
def test_numbers_no_machine_could_run_are_refused_before_the_prompt_is_drawn(capsys, argv, message):
    try:
        code = main(["run", *argv])
    except SystemExit as exc:  # argparse's own one-line errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
