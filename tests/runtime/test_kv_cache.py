"""KV ownership rules and the per-rank cache (no process group)."""

from __future__ import annotations

import pytest
import torch

from helix.errors import HelixInputError
from helix.runtime.kv_cache import KVCache, kv_owner


def _blocks_of(rule: str, prompt_tokens: int, total: int, kvp: int, block: int) -> list[list[int]]:
    owner = kv_owner(torch.arange(total), prompt_tokens, kvp, block, rule)
    return [sorted({int(p) // block for p in (owner == r).nonzero().flatten()}) for r in range(kvp)]


def test_round_robin_five_blocks_over_two_ranks():
    # reference/implementations.md §2.5: 5 blocks, cp=2 -> rank0 {0,2,4}, rank1 {1,3}
    assert _blocks_of("round_robin", 80, 80, 2, 16) == [[0, 2, 4], [1, 3]]


def test_contiguous_five_blocks_over_two_ranks():
    # the older TRT-LLM split: rank0 {0,1,2}, rank1 {3,4}
    assert _blocks_of("contiguous", 80, 80, 2, 16) == [[0, 1, 2], [3, 4]]


def test_generated_tokens_under_each_rule():
    gen = torch.arange(37, 37 + 40)  # prompt of 37 tokens (3 blocks of 16), 40 generated
    assert set(kv_owner(gen, 37, 4, 16, "last_rank").tolist()) == {3}
    assert kv_owner(torch.tensor([47, 48, 64, 80]), 37, 4, 16, "round_robin").tolist() == [2, 3, 0, 1]
    assert kv_owner(torch.tensor([47, 48, 64, 80]), 37, 4, 16, "contiguous").tolist() == [2, 3, 0, 1]
    # contiguous prompt of 3 blocks over 4 ranks: one block each for ranks 0-2, rank 3 empty
    assert kv_owner(torch.tensor([0, 16, 36]), 37, 4, 16, "contiguous").tolist() == [0, 1, 2]


def test_unknown_rule_and_bad_block_are_input_errors():
    with pytest.raises(HelixInputError, match="ownership: unknown rule 'striped'"):
        kv_owner(torch.arange(3), 3, 2, 16, "striped")
    with pytest.raises(HelixInputError, match="block_tokens"):
        kv_owner(torch.arange(3), 3, 2, 0)


def test_cache_keeps_owned_tokens_with_their_global_positions():
    cache = KVCache(num_layers=1, batch_size=1, kv_heads=1, head_dim=1, kvp_rank=1, kvp=2, prompt_tokens=5,
                    block_tokens=2)
    positions = torch.arange(5)
    kv = positions.float().view(1, 5, 1, 1)  # value = position
    cache.reserve(positions)
    cache.write(0, kv, kv)
    for p in (5, 6, 7):  # decode: 5 -> block 2 (rank 0), 6, 7 -> block 3 (rank 1)
        cache.reserve(torch.tensor([p]))
        cache.write(0, torch.full((1, 1, 1, 1), float(p)), torch.full((1, 1, 1, 1), float(p)))
    k, v, pos = cache.view(0)
    assert pos.tolist() == [2, 3, 6, 7] and k.flatten().tolist() == [2.0, 3.0, 6.0, 7.0]
    assert cache.length == 4


def test_cache_grows_past_its_initial_capacity():
    cache = KVCache(1, 2, 1, 3, kvp_rank=0, kvp=1, prompt_tokens=100)
    kv = torch.randn(2, 100, 1, 3)
    cache.reserve(torch.arange(100))
    cache.write(0, kv, kv)
    k, _, pos = cache.view(0)
    assert torch.equal(k, kv.transpose(1, 2)) and pos.tolist() == list(range(100))


def test_ensure_capacity_preallocates_so_appends_keep_their_storage():
    cache = KVCache(1, 2, 1, 3, kvp_rank=0, kvp=1, prompt_tokens=100)
    kv = torch.randn(2, 100, 1, 3)
    cache.reserve(torch.arange(100))
    cache.write(0, kv, kv)
    assert cache.positions.numel() == 128  # doubled from 64 by the prompt
    cache.ensure_capacity(200)
    assert cache.positions.numel() == 200 and cache.k[0].shape[2] == 200
    storage = cache.k[0].data_ptr()
    for p in range(100, 200):  # a hundred appends: no reallocation, the prompt's KV kept
        cache.reserve(torch.tensor([p]))
        cache.write(0, torch.full((2, 1, 1, 3), float(p)), torch.full((2, 1, 1, 3), float(p)))
    assert cache.k[0].data_ptr() == storage
    k, _, pos = cache.view(0)
    assert torch.equal(k[:, :, :100], kv.transpose(1, 2)) and pos.tolist() == list(range(200))
    assert k[0, 0, 199, 0].item() == 199.0
    cache.ensure_capacity(5)  # never shrinks
    assert cache.k[0].data_ptr() == storage


def test_mla_cache_has_no_value_slot():
    cache = KVCache(2, 1, 1, 5, kvp_rank=0, kvp=2, prompt_tokens=40, value_dim=0)  # [c | k_r], no value
    latent = torch.arange(40.0).view(1, 40, 1, 1).expand(1, 40, 1, 5)
    cache.reserve(torch.arange(40))  # blocks 0 and 2 (positions 0-15, 32-39) are rank 0's
    cache.write(1, latent)
    for p in range(40, 80):  # grows past the initial capacity with the zero-width value
        cache.reserve(torch.tensor([p]))
        cache.write(1, torch.full((1, 1, 1, 5), float(p)))
    k, v, pos = cache.view(1)
    assert v.shape == (1, 1, cache.length, 0) and k.shape == (1, 1, cache.length, 5)
    assert pos.tolist() == [*range(16), *range(32, 48), *range(64, 80)]
    assert k[0, 0, :, 0].tolist() == [float(p) for p in pos]
