"""Placement of a layout's groups on scale-up domains (helix.placement), worked by hand, and the search's
rank orders beyond one domain."""

from collections import Counter

import numpy as np
import pytest

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.placement import layout_placement, progression_span, span, used_per_domain
from helix.search import enumerate_layouts, rank_orders
from helix.specs import load_model


def _brute(layout: Layout, domain: int) -> dict:
    """(most domains a group touches, fewest ranks of a group in one domain) from the layout's own groups,
    the job spread evenly over ceil(G / D) domains where that divides."""
    g = layout.num_gpus
    d = -(-g // domain)
    domain = g // d if g % d == 0 else domain
    out = {}
    for name, groups in (("tpa", layout.tpa_groups()), ("kvp", layout.kvp_groups()),
                         ("attention", layout.attention_groups()), ("tpf", layout.tpf_groups()),
                         ("ep", layout.ep_groups()), ("stage", layout.stage_groups()), ("pp", layout.pp_groups())):
        counts = [Counter(r // domain for r in g) for g in groups]
        out[name] = (max(len(c) for c in counts), min(min(c.values()) for c in counts))
    return out


def test_144_gpus_on_two_nvl72_helix_kvp16_tpa9():
    # TPA innermost: TPA groups are 9 consecutive ranks (one rack); KVP strides 9: ranks 0, 9, ..., 135,
    # ranks 0..63 (8 of them) in rack 0 and 72..135 (8) in rack 1
    p = layout_placement(Layout.helix(kvp=16, tpa=9), 72)
    assert p["tpa"] == (1, 9) and p["kvp"] == (2, 8) and p["attention"] == (2, 72)
    # KVP innermost: 72 is no multiple of 16, so the KVP group on ranks 64..79 still splits 8 / 8, and TPA
    # (stride 16: 0, 16, ..., 128) has 5 ranks in rack 0 and 4 in rack 1
    q = layout_placement(Layout.helix(kvp=16, tpa=9, kvp_inner=True), 72)
    assert q["kvp"] == (2, 8) and q["tpa"] == (2, 4)


def test_144_gpus_on_two_nvl72_kvp18_tpa8_either_group_inside():
    # 72 = 9 x 8 = 4 x 18: TPA innermost keeps TPA 8 in a rack (KVP 18 splits 9 / 9); KVP innermost keeps
    # KVP 18 in a rack (TPA 8, stride 18, splits 4 / 4)
    assert layout_placement(Layout.helix(kvp=18, tpa=8), 72)["kvp"] == (2, 9)
    assert layout_placement(Layout.helix(kvp=18, tpa=8), 72)["tpa"] == (1, 8)
    assert layout_placement(Layout.helix(kvp=18, tpa=8, kvp_inner=True), 72)["kvp"] == (1, 18)
    assert layout_placement(Layout.helix(kvp=18, tpa=8, kvp_inner=True), 72)["tpa"] == (2, 4)


def test_144_gpus_tpf8_ep18():
    # TPF innermost: TPF 8 consecutive (one rack), EP strides 8 over 144 ranks: 9 in each rack
    p = layout_placement(Layout.helix(kvp=144, tpf=8, ep=18), 72)
    assert p["tpf"] == (1, 8) and p["ep"] == (2, 9)
    # EP innermost: EP 18 consecutive (one rack), TPF strides 18: 4 in each rack
    q = layout_placement(Layout.helix(kvp=144, tpf=8, ep=18, ep_inner=True), 72)
    assert q["ep"] == (1, 18) and q["tpf"] == (2, 4)


@pytest.mark.parametrize("kvp, tpa", [(8, 9), (9, 8), (24, 3), (3, 24)])
def test_non_power_of_two_factorisations_of_72_fit_one_nvl72(kvp, tpa):
    for order in (False, True):
        p = layout_placement(Layout.helix(kvp=kvp, tpa=tpa, tpf=8, ep=9, kvp_inner=order), 72)
        assert all(d == 1 for d, _ in p.values()), p
        assert p["kvp"] == (1, kvp) and p["tpa"] == (1, tpa) and p["ep"] == (1, 9)


def test_16_gpus_on_two_hgx_nodes():
    # KVP 8 x TPA 2: TPA [0, 1] in a node; KVP [0, 2, ..., 14] 4 + 4 over the two nodes
    p = layout_placement(Layout.helix(kvp=8, tpa=2), 8)
    assert p["tpa"] == (1, 2) and p["kvp"] == (2, 4) and p["stage"] == (2, 8)
    # KVP innermost: KVP [0..7] is one node, TPA [0, 8] one rank in each
    q = layout_placement(Layout.helix(kvp=8, tpa=2, kvp_inner=True), 8)
    assert q["kvp"] == (1, 8) and q["tpa"] == (2, 1)


def test_pp_and_dp_ep_across_hgx_nodes():
    # SGLang's EP72 on 9 H100 nodes: EP is the whole stage, 8 per node
    assert layout_placement(Layout.dp_ep(72), 8)["ep"] == (9, 8)
    # TP 4 x PP 4 on 16 GPUs: stages of 4, two per node, so the PP group [0, 4, 8, 12] touches 2 nodes
    assert layout_placement(Layout.tp_pp(4, 4), 8)["pp"] == (2, 2)


def test_placement_agrees_with_the_layouts_groups_rank_by_rank():
    rng = np.random.default_rng(7)
    for _ in range(150):
        tpa, kvp, dp = (int(rng.choice(c)) for c in ([1, 2, 3, 4, 8, 9], [1, 2, 3, 5, 8, 16, 24], [1, 2, 3]))
        n = tpa * kvp * dp
        ep = int(rng.choice([e for e in range(1, n + 1) if n % e == 0]))
        lay = Layout(tpa=tpa, kvp=kvp, dp=dp, tpf=n // ep, ep=ep, pp=int(rng.choice([1, 2, 3])),
                     kvp_inner=bool(rng.integers(2)), ep_inner=bool(rng.integers(2)))
        domain = int(rng.choice([4, 6, 8, 72]))
        got, want = layout_placement(lay, domain), _brute(lay, domain)
        assert all(got[k] == want[k] for k in want), (lay.describe(), domain, got, want)


def test_a_job_spreads_evenly_over_its_domains_where_it_divides():
    # 128 GPUs on two NVL72 racks run 64 + 64 (100: 50 + 50); 101 fill one rack and 29 of the next; 576 fill 8
    assert used_per_domain([128, 100, 101, 576, 64, 16], 72).tolist() == [64, 50, 72, 72, 64, 16]
    p = layout_placement(Layout.helix(kvp=64, dp=2, tpf=16, ep=8), 72)
    assert p["kvp"] == (1, 64) and p["ep"] == (2, 4) and p["stage"] == (2, 64)
    assert layout_placement(Layout.helix(kvp=8, tpf=8, pp=16), 72)["pp"] == (2, 8)


def test_span_closed_forms_equal_the_count_and_a_whole_job_in_one_domain_is_untouched():
    assert progression_span(9, 16, 144, 72) == (2, 8)
    d, k = span([1, 9, 8], [16, 16, 18], [144, 144, 144], 72)
    assert d.tolist() == [2, 2, 2] and k.tolist() == [8, 8, 9]
    d, k = span([1, 4, 2], [8, 16, 32], [64, 64, 64], 72)  # the paper's <= 64 GPUs: one domain
    assert d.tolist() == [1, 1, 1] and k.tolist() == [8, 16, 32]


def test_layout_rank_order_fields_are_checked():
    with pytest.raises(HelixInputError, match="kvp_inner"):
        Layout(tpa=2, kvp=4, tpf=2, strategy="medha", kvp_inner=True)
    with pytest.raises(HelixInputError, match="ep_inner"):
        Layout(tpa=2, tpf=2, ep_inner="yes")
    assert Layout.helix(kvp=4, tpa=2, kvp_inner=True).describe().endswith("kvp_inner)")
    assert Layout.helix(kvp=4, tpa=2).attention_coords(1) == (0, 0, 0, 1)
    assert Layout.helix(kvp=4, tpa=2, kvp_inner=True).attention_coords(1) == (0, 0, 1, 0)


def test_search_tries_both_orders_only_beyond_one_domain():
    assert rank_orders(Layout.helix(kvp=8, tpa=8, tpf=8, ep=8), 72) == [(0, 0)]
    assert rank_orders(Layout.helix(kvp=18, tpa=8, tpf=16, ep=9), 72) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert rank_orders(Layout.tp(16, ep=8), 8) == [(0, 0)]  # TP's MoE all-reduce spans the stage either way
    assert rank_orders(Layout.helix(kvp=16, tpa=1, tpf=2, ep=8), 8) == [(0, 0), (0, 1)]


def test_search_enumerates_non_power_of_two_factorisations_of_72():
    # every divisor is tried: on 72 GPUs Medha runs Llama-405B as KVP 9 x TP 8 (and 18 x 4, 36 x 2, 72 x 1),
    # Helix as 8 x 9 with PP (its output width Q*v = 16,384 and F divide only by powers of two)
    model = load_model("llama-3.1-405b")
    lay = enumerate_layouts(model, "medha", 72, gpu_counts={72}, domain_gpus=72)
    pairs = {(int(k), int(t)) for k, t, p in zip(lay["kvp"], lay["tpa"], lay["pp"], strict=True) if p == 1}
    assert pairs == {(9, 8), (18, 4), (36, 2), (72, 1)}
    lay = enumerate_layouts(model, "helix", 72, gpu_counts={72}, domain_gpus=72)
    rows = set(zip(*(lay[f].tolist() for f in ("kvp", "tpa", "dp", "pp")), strict=True))
    assert {(8, 1, 1, 9), (1, 8, 1, 9), (4, 2, 1, 9), (2, 1, 1, 36)} <= rows
    assert not lay["kvp_inner"].any()  # 72 GPUs are one domain: one order
