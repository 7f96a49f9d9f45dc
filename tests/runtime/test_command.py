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


@pytest.mark.parametrize("argv, message", [
    (["--model", "gpt-17"], "helix run: error: --model: unknown runtime model 'gpt-17'"),
    (["--tpa", "3", "--kvp", "1"], "helix run: error: tpa: must divide the KV heads (4), got 3"),
    (["--batch", "0"], "helix run: error: --batch: must be >= 1, got 0"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


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
