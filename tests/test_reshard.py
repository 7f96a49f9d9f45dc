"""Re-sharding a live KV cache: the moved-bytes formula against an enumeration of blocks, by hand."""

from fractions import Fraction

import pytest

from helix.cost import reshard


def _holders(block, head, kvp, tpa, heads):
    """Ranks holding (block, head) under round-robin blocks, heads split evenly over TPA (or whole: MLA)."""
    out = set()
    for r in range(kvp * tpa):
        k, t = divmod(r, tpa)
        mine = range(heads) if heads == 1 else range(t * heads // tpa, (t + 1) * heads // tpa)
        if block % kvp == k and head in mine:
            out.add(r)
    return out


def _enumerated(a, ta, b, tb, heads, periods=3):
    """Pieces every new rank needs and did not hold, over whole lcm periods of blocks, per one cache copy."""
    n = periods * a * b  # a multiple of lcm(a, b)
    moved = sum(1 for i in range(n) for h in range(heads) for r in _holders(i, h, b, tb, heads)
                if r not in _holders(i, h, a, ta, heads))
    return Fraction(moved, n * heads)


@pytest.mark.parametrize(("a", "ta", "b", "tb", "heads", "by_hand"), [
    (2, 1, 4, 1, 1, Fraction(1, 2)),  # blocks 0, 1 of every 4 stay
    (4, 1, 8, 1, 1, Fraction(1, 2)),
    (3, 1, 2, 1, 1, Fraction(2, 3)),  # of 6 residues only 0 and 1 keep their owner
    (4, 1, 4, 1, 8, Fraction(0)),
    (2, 2, 4, 1, 2, Fraction(3, 4)),  # GQA, KVP 2 x TPA 2 -> KVP 4 on 4 ranks: ranks 0, 3 lack 1/8, 1, 2 lack 1/4
    (4, 1, 2, 2, 1, Fraction(3, 2)),  # MLA: TPA 2 duplicates the latent; ranks 0, 3 lack 1/4, ranks 1, 2 lack 1/2
])
def test_moved_fraction_by_hand_and_by_enumerating_blocks(a, ta, b, tb, heads, by_hand):
    assert _enumerated(a, ta, b, tb, heads) == by_hand
    assert reshard.moved_fraction(a, ta, b, tb, heads) == pytest.approx(float(by_hand), abs=1e-15)


@pytest.mark.parametrize(("a", "b"), [(1, 2), (2, 3), (6, 4), (8, 64), (5, 7)])
def test_tpa_one_is_one_minus_min_over_lcm(a, b):
    from math import lcm

    assert reshard.moved_fraction(a, 1, b, 1, 1) == pytest.approx(1 - min(a, b) / lcm(a, b), abs=1e-15)
    assert _enumerated(a, 1, b, 1, 1, periods=1) == 1 - Fraction(min(a, b), lcm(a, b))


def test_received_per_rank_and_bytes():
    assert reshard.received_fractions(2, 2, 4, 1, 2) == (0.125, 0.25, 0.25, 0.125)
    assert reshard.reshard_bytes(8e9, 2, 1, 4, 1, 1) == pytest.approx(4e9)
    with pytest.raises(ValueError, match="kvp_to"):
        reshard.moved_fraction(2, 1, 0, 1, 1)


def test_reshard_time_is_the_busiest_ranks_all_to_all():
    from helix.cost.collectives import collective_s
    from helix.specs import load_hardware

    hw = load_hardware("gb200-nvl72")
    t = float(reshard.reshard_s(8e9, 2, 2, 4, 1, 2, hw))
    assert t == pytest.approx(float(collective_s("all_to_all", 8e9 * 0.25 * 4 / 3, 4, hw)))
    assert float(reshard.reshard_s(8e9, 4, 1, 4, 1, 1, hw)) == 0.0
    # 2 GB received at ~900 GB/s per direction: milliseconds, not microseconds
    assert 1e-3 < t < 1e-1


@pytest.mark.parametrize(("a", "ta", "b", "tb", "heads"), [(2, 2, 4, 1, 4), (3, 1, 2, 1, 1), (4, 1, 2, 2, 1),
                                                           (2, 4, 8, 1, 4)])
def test_exact_bytes_any_length_by_enumerating_tokens(a, ta, b, tb, heads):
    block = 4
    for tokens in (1, 7, 16, 37, 64, 101):
        moved = sum(1 for p in range(tokens) for h in range(heads) for r in _holders(p // block, h, b, tb, heads)
                    if r not in _holders(p // block, h, a, ta, heads))
        got = reshard.reshard_bytes_exact(tokens, block, 10.0, a, ta, b, tb, heads)
        assert got == pytest.approx(10.0 * moved / heads, abs=1e-9), tokens
    whole = block * a * b  # whole lcm periods: the fraction formula
    assert reshard.reshard_bytes_exact(whole, block, 10.0, a, ta, b, tb, heads) == pytest.approx(
        float(reshard.reshard_bytes(10.0 * whole, a, ta, b, tb, heads)))


def test_moved_by_residue_by_hand():
    # KVP 2 x TPA 2 -> KVP 4 (K = 4): residue 0 on rank 0 lacks heads 2, 3; 1 and 2 move whole; 3 lacks heads 0, 1
    assert reshard.moved_by_residue(2, 2, 4, 1, 4) == (0.5, 1.0, 1.0, 0.5)
