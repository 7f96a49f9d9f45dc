"""Re-sharding the live KV cache mid-generation (KVP 2 x TPA 2 -> KVP 4 x TPA 1 on 4 ranks): tokens still equal
Hugging Face's, and the bytes moved equal the simulator's formula (helix.cost.reshard) byte for byte."""

from __future__ import annotations

import pytest
import torch

from helix.cost.reshard import moved_fraction, received_fractions
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
    specs = (RunSpec(NEW, DecodeOptions(), Reshard(AT, 4, 1)), RunSpec(NEW, DecodeOptions(block_tokens=4),
                                                                        Reshard(AT, 4, 1)))
    payload, hf = prepare(Job("tiny-llama", 2, 2, prompt, specs))
    with torch.no_grad():
        ref = hf.generate(prompt, max_new_tokens=NEW, do_sample=False, min_new_tokens=NEW)[:, PROMPT:]
    return run_spawned(payload, timeout_s=120), ref


@pytest.mark.slow
def test_tokens_equal_hf_after_the_reshard(runs):
    per_rank, ref = runs
    for rank, results in enumerate(per_rank):
        for r in results:
            assert torch.equal(r.tokens, ref), rank
    # after the re-shard every rank is its own KVP rank: 64 + 4 decoded tokens, blocks of 16 -> 16, 16, 16, 16 + 4
    assert per_rank[0][0].kv_tokens == [16 + 4 + 0, 16, 16, 16]


@pytest.mark.slow
def test_moved_bytes_equal_the_formula(runs):
    per_rank, _ = runs
    one_copy = LAYERS * BATCH * (PROMPT + AT) * K * HSZ * 2 * 4  # K and V, fp32
    for run in range(2):  # blocks of 16 (4 blocks: one lcm period) and of 4 (16 blocks: four periods)
        sent = [sum(x.n_bytes for x in rank[run].traffic if x.step == STEP and x.phase == PHASE) for rank in per_rank]
        assert sum(sent) == moved_fraction(2, 2, 4, 1, K) * one_copy == 0.75 * one_copy
        # each rank sends to others what it held: ranks 0 and 3 keep 1/8, so send 1/4 - 1/8 = 1/8 of the cache
        assert sent == [one_copy // 8, one_copy // 4, one_copy // 4, one_copy // 8]
        assert sorted(sent) == sorted(int(f * one_copy) for f in received_fractions(2, 2, 4, 1, K))
        assert {x.kind for rank in per_rank for x in rank[run].traffic if x.phase == PHASE} == {"all_to_all"}


def test_reshard_checks():
    assert Reshard(3, 4, 1).layout(Layout.helix(kvp=2, tpa=2)) == Layout.helix(kvp=4, tpa=1)
    with pytest.raises(HelixInputError, match="reshard_kvp"):
        Reshard(3, 8, 1).layout(Layout.helix(kvp=2, tpa=2))
    with pytest.raises(HelixInputError, match="reshard_at_step"):
        Reshard(0, 4, 1)
