"""Re-sharding the live KV cache mid-generation (KVP 2 x TPA 2 -> KVP 4 x TPA 1 on 4 ranks): tokens still equal
Hugging Face's, and the bytes moved equal the simulator's formula (helix.cost.reshard) byte for byte."""

from __future__ import annotations

import pytest
import torch

from helix.cost.reshard import moved_fraction, received_fractions, reshard_bytes_exact
from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime.decoder import DecodeOptions
from helix.runtime.launch import Job, RunSpec, prepare, run_spawned
from helix.runtime.reshard import PHASE, STEP, Reshard

BATCH, PROMPT, NEW, AT = 2, 61, 8, 3  # the cache holds 61 + 3 = 64 tokens at the re-shard: 4 blocks of 16
LAYERS, K, HSZ = 3, 4, 10  # tiny-llama


@pytest.fixture(scope="module")
def runs():
    prompt = torch.randint(0, 211, (BATCH, PROMPT), generator=torch.Generator().manual_seed(3))
    specs = (RunSpec(NEW, DecodeOptions(), Reshard(AT, 4, 1)),  # 64 tokens: 4 blocks of 16, one lcm period
             RunSpec(NEW, DecodeOptions(block_tokens=4), Reshard(AT + 2, 4, 1)))  # 66: 16 blocks of 4 and 2 tokens
    payload, hf = prepare(Job("tiny-llama", Layout.helix(kvp=2, tpa=2), prompt, specs))
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=NEW, do_sample=False, min_new_tokens=NEW)[:, PROMPT:]
    return run_spawned(payload, timeout_s=120), ref


@pytest.mark.slow
def test_tokens_equal_hf_after_the_reshard(runs):
    per_rank, ref = runs
    for rank, results in enumerate(per_rank):
        for r in results:
            assert torch.equal(r.tokens, ref), rank
    # after the re-shard every rank is its own KVP rank: 61 + 7 = 68 tokens in blocks of 16 -> 16 + 4, 16, 16, 16
    assert per_rank[0][0].kv_tokens == [16 + 4, 16, 16, 16]
    assert per_rank[0][1].kv_tokens == [20, 16, 16, 16]  # blocks of 4: 17 blocks -> 5, 4, 4, 4


@pytest.mark.slow
def test_moved_bytes_equal_the_formula(runs):
    per_rank, _ = runs
    per_token = LAYERS * BATCH * K * HSZ * 2 * 4  # one copy: K and V heads of every layer and request, fp32
    sent = [[sum(x.n_bytes for x in rank[run].traffic if x.step == STEP and x.phase == PHASE) for rank in per_rank]
            for run in range(2)]
    one_copy = per_token * (PROMPT + AT)  # 64 tokens: whole lcm periods, the fraction formula
    assert sum(sent[0]) == moved_fraction(2, 2, 4, 1, K) * one_copy == 0.75 * one_copy
    # each rank sends what its new owner lacks: ranks 0 and 3 send 1/8 of the cache, ranks 1 and 2 1/4
    assert sent[0] == [one_copy // 8, one_copy // 4, one_copy // 4, one_copy // 8]
    assert sorted(sent[0]) == sorted(int(f * one_copy) for f in received_fractions(2, 2, 4, 1, K))
    # 66 tokens in blocks of 4: the last block (2 tokens, residue 0) sends half its heads: 0.75 x 64 + 0.5 x 2
    exact = reshard_bytes_exact(PROMPT + AT + 2, 4, per_token, 2, 2, 4, 1, K)
    assert sum(sent[1]) == exact == per_token * (0.75 * 64 + 0.5 * 2)
    assert {x.kind for rank in per_rank for x in rank[0].traffic if x.phase == PHASE} == {"all_to_all"}


def test_cli_refuses_a_reshard_it_cannot_run(capsys):
    from helix.cli import main

    assert main(["run", "--kvp", "2", "--tpa", "2", "--reshard-at", "3"]) == 2
    assert "--reshard-kvp" in capsys.readouterr().err
    assert main(["run", "--kvp", "2", "--tpa", "2", "--reshard-at", "3", "--reshard-kvp", "8"]) == 2
    assert main(["run", "--kvp", "2", "--tpa", "2", "--new-tokens", "4", "--reshard-at", "3",
                 "--reshard-kvp", "4"]) == 2
    assert "1..2" in capsys.readouterr().err
    assert main(["run", "--model", "tiny-deepseek", "--kvp", "2", "--reshard-at", "3", "--reshard-kvp", "1",
                 "--reshard-tpa", "2"]) == 2
    assert "llama family" in capsys.readouterr().err


def test_reshard_checks():
    assert Reshard(3, 4, 1).layout(Layout.helix(kvp=2, tpa=2)) == Layout.helix(kvp=4, tpa=1)
    with pytest.raises(HelixInputError, match="reshard_kvp"):
        Reshard(3, 8, 1).layout(Layout.helix(kvp=2, tpa=2))
    with pytest.raises(HelixInputError, match="reshard_at_step"):
        Reshard(0, 4, 1)
