"""Local attention and the LSE combine, alone (single process, fp32 and fp64)."""

from __future__ import annotations

import math

import pytest
import torch

from helix.runtime.attention import combine_partial_attention, local_attention


def _full_attention(q, k, v, q_pos, k_pos, scale):
    """Plain softmax attention over the whole cache, written independently (no LSE)."""
    B, T, Qh, D = q.shape
    g = Qh // k.shape[1]
    kk = k.repeat_interleave(g, dim=1)  # [B, Q, S, D]
    vv = v.repeat_interleave(g, dim=1)
    scores = torch.einsum("bthd,bhsd->bhts", q, kk) * scale
    scores = scores.masked_fill(k_pos[None, None, None, :] > q_pos[None, None, :, None], float("-inf"))
    return torch.einsum("bhts,bhsd->bthd", torch.softmax(scores, dim=-1), vv)


def test_equal_lses_average_the_outputs():
    outs = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # [P=2, D=2]
    out, lse = combine_partial_attention(outs, torch.tensor([0.7, 0.7]))
    torch.testing.assert_close(out, torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(lse, torch.tensor(0.7 + math.log(2)))


def test_lses_log2_and_log8_weigh_0p2_and_0p8():
    # Hand case from reference/implementations.md §4.1: natural-log LSEs log 2 and log 8.
    outs = torch.tensor([[10.0], [20.0]])
    out, lse = combine_partial_attention(outs, torch.tensor([math.log(2), math.log(8)]))
    torch.testing.assert_close(out, torch.tensor([0.2 * 10 + 0.8 * 20]))
    torch.testing.assert_close(lse, torch.tensor(math.log(10)))


def test_a_dominant_shard_wins():
    outs = torch.tensor([[5.0, -1.0], [100.0, 100.0], [-7.0, 3.0]])
    out, _ = combine_partial_attention(outs, torch.tensor([50.0, -40.0, 0.0]))
    torch.testing.assert_close(out, torch.tensor([5.0, -1.0]))


def test_an_empty_shard_with_nan_output_does_not_leak():
    outs = torch.tensor([[1.0, 2.0], [float("nan"), float("nan")], [3.0, 4.0]])
    lses = torch.tensor([0.0, float("-inf"), 0.0])
    out, lse = combine_partial_attention(outs, lses)
    torch.testing.assert_close(out, torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(lse, torch.tensor(math.log(2)))
    # negative control: weighting alone (0 * NaN) would have leaked the NaN
    naive = (torch.softmax(lses, dim=0)[:, None] * outs).sum(0)
    assert torch.isnan(naive).all()


def test_a_nan_lse_counts_as_empty_and_an_all_empty_row_gives_zero_not_nan():
    outs = torch.tensor([[[1.0], [float("nan")]], [[float("nan")], [float("nan")]]])  # [P=2, rows=2, D=1]
    lses = torch.tensor([[0.0, float("-inf")], [float("nan"), float("-inf")]])
    out, lse = combine_partial_attention(outs, lses)
    torch.testing.assert_close(out, torch.tensor([[1.0], [0.0]]))
    assert lse[0] == 0.0 and lse[1] == float("-inf")


def test_base2_lses_are_wrong_as_natural_and_right_when_declared():
    torch.manual_seed(0)
    outs, lses = torch.randn(4, 6, 5), torch.randn(4, 6) * 3
    want, want_lse = combine_partial_attention(outs, lses)
    base2 = lses / math.log(2)  # what a log2-sum-exp2 kernel would return for the same shards
    got, got_lse = combine_partial_attention(outs, base2, lse_base=2.0)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_lse, want_lse)
    mistaken, _ = combine_partial_attention(outs, base2)  # base-2 values read as natural log
    assert (mistaken - want).abs().max() > 1e-2


def test_local_attention_lse_is_the_natural_logsumexp_of_the_scores():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    _, lse = local_attention(q, k, v, torch.tensor([9]), torch.arange(5), scale=0.5)
    scores = (q[0, 0] @ k[0, 0].T) * 0.5  # [2 heads, 5 keys]
    torch.testing.assert_close(lse[0, 0], torch.log(torch.exp(scores).sum(-1)))


def test_an_empty_local_shard_gives_minus_inf_lse_and_zero_output():
    q = torch.randn(2, 1, 4, 3)
    k = v = torch.zeros(2, 2, 0, 3)  # S_loc = 0
    out, lse = local_attention(q, k, v, torch.tensor([40]), torch.zeros(0, dtype=torch.int64), scale=1.0)
    assert torch.equal(out, torch.zeros(2, 1, 4, 3)) and bool((lse == float("-inf")).all())


@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_sharded_attention_and_combine_equal_full_attention_in_fp64(shards):
    """KV scattered to shards in blocks of 3 (some shards empty for early queries), causal by global position."""
    torch.manual_seed(shards)
    B, T, Qh, K, S, D = 2, 4, 6, 3, 13, 8
    dt = torch.float64
    q, k, v = torch.randn(B, T, Qh, D, dtype=dt), torch.randn(B, K, S, D, dtype=dt), torch.randn(B, K, S, D, dtype=dt)
    k_pos = torch.arange(S)
    q_pos = torch.tensor([0, 2, 7, 12])  # query 0 sees only position 0: every other shard is empty for it
    owner = (k_pos // 3) % shards
    outs, lses = [], []
    for s in range(shards):
        idx = (owner == s).nonzero().flatten()
        o, l = local_attention(q, k[:, :, idx], v[:, :, idx], q_pos, k_pos[idx], scale=D ** -0.5)
        outs.append(o)
        lses.append(l)
    out, _ = combine_partial_attention(torch.stack(outs), torch.stack(lses))
    want = _full_attention(q, k, v, q_pos, k_pos, D ** -0.5)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("block", [1, 4, 5, 13])
def test_split_kv_blocks_give_the_one_pass_attention(block):
    # Prefill-shaped causal queries: query 0 sees one key, so every later block is empty for it.
    torch.manual_seed(3)
    B, T, Qh, K, S, D = 2, 4, 6, 3, 13, 8
    dt = torch.float64
    q, k, v = torch.randn(B, T, Qh, D, dtype=dt), torch.randn(B, K, S, D, dtype=dt), torch.randn(B, K, S, D, dtype=dt)
    q_pos, k_pos = torch.tensor([0, 2, 7, 12]), torch.arange(S)
    out, lse = local_attention(q, k, v, q_pos, k_pos, scale=D ** -0.5, block_tokens=block)
    want_out, want_lse = local_attention(q, k, v, q_pos, k_pos, scale=D ** -0.5, block_tokens=None)
    torch.testing.assert_close(out, want_out, rtol=0, atol=1e-12)
    torch.testing.assert_close(lse, want_lse, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, _full_attention(q, k, v, q_pos, k_pos, D ** -0.5), rtol=0, atol=1e-12)
