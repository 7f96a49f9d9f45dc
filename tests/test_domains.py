"""Collectives across scale-up domains (helix.cost.collectives.hierarchical_s), worked by hand on round
numbers; a group inside one domain costs exactly what the single-domain formulas give; scale-out networks."""

from dataclasses import replace

import numpy as np
import pytest

from helix.cost import collectives
from helix.errors import HelixInputError
from helix.layout import Layout
from helix.specs import load_hardware, load_model
from helix.specs.networks import networks, with_scale_out
from helix.step import simulate

# NVLink 100 GB/s, network 10 GB/s (+5 us), efficiency 1, sync 1 us, ring 10 us + 1 us per step, two-shot only
HW = replace(load_hardware("h200", engine="none"), link_bytes_per_s_per_direction=100e9,
             scale_out_bytes_per_s_per_direction=10e9, link_efficiency=1.0, sync_latency_s=1e-6,
             ring_base_latency_s=10e-6, ring_hop_latency_s=1e-6, nvls_latency_s=0.0, scale_out_latency_s=5e-6,
             all_reduce_algorithms=("two_shot",))
N = 8e6  # bytes


def test_all_reduce_over_two_domains_of_eight():
    # reduce-scatter + all-gather inside (two-shot over 8): 2 x 1 us + 2 x 7/8 x 8 MB / 100 GB/s = 142 us;
    # all-reduce across of 8 MB / 8 = 1 MB per NIC over 2 domains: 2 x 1 us + 5 us + 2 x 1/2 x 1 MB / 10 GB/s = 107 us
    t = collectives.collective_s("all_reduce", N, 16, HW, domains=2, per_domain=8)
    assert float(t) == pytest.approx(142e-6 + 107e-6, rel=1e-12)


def test_all_to_all_over_two_domains_of_eight():
    # inside: the 8 chunks for the own domain (4 MB) among 8: 1 us + 7/8 x 4 MB / 100 GB/s = 36 us;
    # across: (16 - 8)/16 of 8 MB = 4 MB through each NIC: 1 us + 5 us + 4 MB / 10 GB/s = 406 us; they overlap
    t = collectives.collective_s("all_to_all", N, 16, HW, domains=2, per_domain=8)
    assert float(t) == pytest.approx(406e-6, rel=1e-12)


def test_all_gather_over_two_domains_of_eight():
    # across: each NIC fetches its peer's 1/16 (output 8 MB / 8 = 1 MB over 2): 6 us + 1/2 x 1 MB / 10 GB/s = 56 us;
    # inside: all-gather of the 8 MB over 8: 1 us + 7/8 x 8 MB / 100 GB/s = 71 us
    t = collectives.collective_s("all_gather", N, 16, HW, domains=2, per_domain=8)
    assert float(t) == pytest.approx(56e-6 + 71e-6, rel=1e-12)


def test_uneven_split_uses_the_fewest_ranks_per_domain_for_the_network():
    # 16 ranks split 12 / 4: the domain with 4 NICs pushes 8 MB / 4 = 2 MB each across (all-reduce),
    # the inside phases run over the fullest domain's ceil(16 / 2) = 8 ranks
    t = collectives.collective_s("all_reduce", N, 16, HW, domains=2, per_domain=4)
    assert float(t) == pytest.approx(142e-6 + 7e-6 + 2e6 / 10e9, rel=1e-12)


def test_pp_handoffs_crossing_a_domain():
    # PP 4 over 2 domains: 1 of the 3 hand-offs crosses; inside 1 us + 1 MB / 100 GB/s = 11 us,
    # across 1 us + 1 MB / 10 GB/s + 5 us = 106 us: mean 11 + (106 - 11) / 3 us per call
    t = collectives.collective_s("p2p", 1e6, 4, HW, domains=2)
    assert float(t) == pytest.approx(11e-6 + 95e-6 / 3, rel=1e-12)
    assert float(collectives.collective_s("p2p", 1e6, 4, HW, domains=1)) == pytest.approx(11e-6, rel=1e-12)


@pytest.mark.parametrize("hw_name, engine", [("gb200-nvl72", "trtllm"), ("h200", "sglang"), ("h200", "none")])
def test_one_domain_costs_exactly_the_single_domain_formulas(hw_name, engine):
    hw = load_hardware(hw_name, engine=engine)
    p = np.array([2, 4, 8])
    n = np.array([1e3, 1e6, 3e7])
    for kind in ("all_reduce", "all_gather", "all_to_all"):
        placed = collectives.collective_s(kind, n, p, hw, domains=np.ones(3), per_domain=p)
        default = collectives.collective_s(kind, n, p, hw)
        if hw.op_model is None:
            flat = (collectives.all_reduce_s if kind == "all_reduce" else collectives.all_to_all_s)(n, p, hw)
        else:
            forms = [hw.op_model.collective(k) for k in (["custom_all_reduce", "all_reduce"] if kind == "all_reduce"
                                                         else [kind])]
            flat = np.min([f.time_s(kind, n, p, hw.collective_bandwidth_scale * f.bus_bytes_per_s) for f in forms],
                          axis=0)
        np.testing.assert_array_equal(placed, flat)
        np.testing.assert_array_equal(default, flat)


def test_kvp_kept_inside_a_node_is_cheaper_on_two_hgx_nodes():
    model, hw = load_model("llama-3.1-405b"), load_hardware("h200")
    strided = simulate(model, hw, Layout.helix(kvp=8, tpa=2), 4, 100_000)
    inside = simulate(model, hw, Layout.helix(kvp=8, tpa=2, kvp_inner=True), 4, 100_000)
    assert float(inside.comm_total_s["kvp_all_to_all"]) < float(strided.comm_total_s["kvp_all_to_all"])
    # the other collectives run over the whole stage (KVP x TPA, TPF): the order does not move them
    for name in ("o_projection_all_reduce", "ffn_all_reduce"):
        assert float(inside.comm_total_s[name]) == float(strided.comm_total_s[name])


def test_scale_out_networks_and_the_flag_value():
    assert networks()["ndr400-ib"][0] == 50e9 and networks()["xdr800-ib"][0] == 100e9
    assert networks()["roce400"][0] == 50e9
    for name in ("gb200-nvl72", "b200", "h100", "h200", "h800"):
        hw = load_hardware(name)
        assert hw.scale_out_bytes_per_s_per_direction == networks()[hw.scale_out_network][0], name
    fast = with_scale_out(load_hardware("gb200-nvl72"), "xdr800-ib")
    assert fast.scale_out_bytes_per_s_per_direction == 100e9 and fast.scale_out_network == "xdr800-ib"
    with pytest.raises(HelixInputError, match="--scale-out"):
        with_scale_out(fast, "ndr-400")


def test_a_faster_network_helps_only_groups_that_leave_the_rack():
    model = load_model("deepseek-r1")
    ndr, xdr = load_hardware("gb200-nvl72"), with_scale_out(load_hardware("gb200-nvl72"), "xdr800-ib")
    inside = Layout.helix(kvp=64, tpf=8, ep=8)
    assert float(simulate(model, ndr, inside, 16, 10**6).ttl_s) == float(simulate(model, xdr, inside, 16, 10**6).ttl_s)
    across = Layout.helix(kvp=128, tpf=16, ep=8)  # 72 + 56 ranks on two racks
    assert float(simulate(model, xdr, across, 16, 10**6).ttl_s) < float(simulate(model, ndr, across, 16, 10**6).ttl_s)


def test_cli_scale_out_and_rank_order_flags(capsys):
    from helix.cli import main

    assert main(["simulate", "--hardware", "h200", "--strategy", "tp", "--gpus", "8", "--kvp-inner"]) == 2
    assert "--kvp-inner" in capsys.readouterr().err
    assert main(["simulate", "--scale-out", "ndr-400"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--scale-out" in err and "xdr800-ib" in err
    assert main(["simulate", "--hardware", "h200", "--model", "llama-3.1-405b", "--kvp", "8", "--tpa", "2",
                 "--kvp-inner", "--scale-out", "xdr800-ib", "--context", "100K", "--batch", "4", "--json"]) == 0
    assert '"kvp_inner"' not in capsys.readouterr().err


def test_a_group_given_no_placement_is_a_job_placed_by_the_one_rule():
    # 12 GPUs on 8-GPU nodes spread 6 + 6 (as helix.placement places a 12-GPU job); 9 cannot split evenly:
    # a full node and 1; 144 on NVL72 is two full racks; 8 is one node
    d, k = collectives.contiguous_placement([12, 9, 16, 8], 8)
    assert d.tolist() == [2, 2, 2, 1] and k.tolist() == [6, 1, 8, 8]
    d, k = collectives.contiguous_placement([144, 128, 100], 72)
    assert d.tolist() == [2, 2, 2] and k.tolist() == [72, 64, 50]


def test_h800_deepep_past_the_node_runs_on_the_same_nic_as_the_measured_h100():
    # the H100 DeepEP table is measured across nodes (EP 8-64); on H800 only NVLink is narrower (200/450),
    # the CX7 400 Gb/s NIC is the same, so past 8 GPUs the H800 pays the H100's measured time, and DeepEP's
    # own H800 figures (docs/legacy.md, low-latency kernels, 128 tokens x top-8, hidden 7168: dispatch 173 /
    # combine 314 us at EP 64, 192 / 369 at EP 128) agree: within 5 % at EP 64, where the table stops, and
    # 11 % / 16 % at EP 128, the form's extrapolation (the table grows less from EP 32 to 64 than DeepEP's)
    h100, h800 = load_hardware("h100", engine="sglang"), load_hardware("h800", engine="sglang")
    tokens, hidden, topk = 128, 7168, 8
    dispatch_bytes, combine_bytes = tokens * topk * (hidden + hidden / 128 * 4), tokens * topk * 2 * hidden
    for ep, readme_d, readme_c, rel in ((64, 173e-6, 314e-6, 0.05), (128, 192e-6, 369e-6, 0.16)):
        d = [float(collectives.collective_s("all_to_all", dispatch_bytes, ep, hw, "moe_dispatch", 256))
             for hw in (h100, h800)]
        c = [float(collectives.collective_s("all_to_all", combine_bytes, ep, hw, "moe_combine", 256))
             for hw in (h100, h800)]
        assert d[1] == d[0] and c[1] == c[0]
        assert d[1] == pytest.approx(readme_d, rel=rel) and c[1] == pytest.approx(readme_c, rel=rel)
    # inside one node the narrower NVLink shows: 0.444 x the bandwidth
    inside = [float(collectives.collective_s("all_to_all", dispatch_bytes, 8, hw, "moe_dispatch", 256))
              for hw in (h100, h800)]
    assert inside[1] > 1.5 * inside[0]
