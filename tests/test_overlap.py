"""HOP-B arithmetic: the paper's Fig. 3 example and the chunked pipeline."""

import numpy as np
import pytest

from helix.cost.overlap import best_chunked_s, pipelined_s, serial_s


def test_fig3_serial_and_hopb():
    # 8 requests, 2 units of attention and 1.2 units of communication each [paper Fig. 3].
    assert serial_s(8 * 2.0, 8 * 1.2) == pytest.approx(25.6)
    assert pipelined_s(2.0, 1.2, 8) == pytest.approx(17.2)


def test_fig3_best_chunking_is_per_request():
    total = best_chunked_s(lambda c: (2.0 * -(-8 // c), 1.2 * -(-8 // c)), 8)
    assert total == pytest.approx(17.2)


def test_latency_bound_comm_prefers_one_chunk():
    # each chunk's collective pays a fixed 5 units: splitting only adds latency -> serial (c = 1) wins
    total = best_chunked_s(lambda c: (1.0 * -(-8 // c), 5.0 + 0.01 * -(-8 // c)), 8)
    assert total == pytest.approx(8.0 + 5.08)


def test_comm_bound_pipeline():
    # t_c > t_a: T = t_a + B t_c
    assert pipelined_s(1.0, 3.0, 4) == pytest.approx(1 + 3 + 3 * 3)
    np.testing.assert_allclose(pipelined_s(np.array([1.0, 2.0]), np.array([3.0, 1.0]), 4), [13.0, 9.0])


def test_fixed_chunk_count_is_what_a_runtime_runs():
    from helix.cost.overlap import chunked_s

    times = lambda c: (1.0 * -(-8 // c), 5.0 + 0.01 * -(-8 // c))  # noqa: E731  latency-bound, as above
    assert chunked_s(times, 8, 1) == pytest.approx(8.0 + 5.08)  # one chunk: serial
    assert chunked_s(times, 8, 8) == pytest.approx(1 + 5.01 + 7 * 5.01)  # a chunk per request pays 8 latencies
    assert chunked_s(times, 8, 64) == chunked_s(times, 8, 8)  # more chunks than requests: one request each
    assert best_chunked_s(times, 8) <= min(chunked_s(times, 8, c) for c in (1, 2, 4, 8))


def test_simulate_hopb_chunks():
    from helix import Layout, load_hardware, load_model, simulate
    from helix.errors import HelixInputError

    model, hw = load_model("llama-3.1-405b"), load_hardware("gb200-nvl72")
    lay = Layout.helix(kvp=8, tpa=8)
    best = simulate(model, hw, lay, 32, 10**6)
    one = simulate(model, hw, lay, 32, 10**6, hopb_chunks=1)
    serial = simulate(model, hw, lay, 32, 10**6, overlap="serial")
    assert float(one.ttl_s) == pytest.approx(float(serial.ttl_s), rel=1e-12)  # one chunk = no overlap
    for c in (2, 8, 32, 1000):
        assert float(best.ttl_s) <= float(simulate(model, hw, lay, 32, 10**6, hopb_chunks=c).ttl_s) * (1 + 1e-12)
    with pytest.raises(HelixInputError, match="hopb_chunks"):
        simulate(model, hw, lay, 32, 10**6, hopb_chunks=0)


def test_overlap_efficiency_generalises_the_pipeline():
    # by hand: T = a + c + (n - 1) (max(a, c) + (1 - eta) min(a, c)), a = 2, c = 1.2, n = 8
    assert pipelined_s(2.0, 1.2, 8, 1.0) == pytest.approx(17.2)  # the paper's Fig. 3, unchanged
    assert pipelined_s(2.0, 1.2, 8, 1.0) == pipelined_s(2.0, 1.2, 8)  # bit for bit
    assert pipelined_s(2.0, 1.2, 8, 0.5) == pytest.approx(3.2 + 7 * (2.0 + 0.6))  # 21.4
    assert pipelined_s(2.0, 1.2, 8, 0.0) == pytest.approx(25.6)  # no overlap: serial per chunk = Fig. 3 serial
    # comm-bound (c > a): the shorter stage is the compute
    np.testing.assert_allclose(pipelined_s(np.array([1.0, 2.0]), np.array([3.0, 1.0]), 4, 0.5),
                               [4 + 3 * 3.5, 3 + 3 * 2.5])
    assert pipelined_s(1.0, 3.0, 1, 0.0) == pytest.approx(4.0)  # one item: nothing to overlap, any eta


def test_overlap_efficiency_in_the_chunked_pipeline_and_step():
    from dataclasses import replace

    from helix import Layout, load_hardware, load_model, simulate
    from helix.cost.overlap import chunked_s

    times = lambda c: (2.0 * -(-8 // c), 1.2 * -(-8 // c))  # noqa: E731  Fig. 3 per chunk
    assert chunked_s(times, 8, 8, 0.0) == pytest.approx(25.6)
    assert best_chunked_s(times, 8, 0.0) == pytest.approx(25.6)  # nothing hides: any chunking is serial
    assert best_chunked_s(times, 8, 0.5) == pytest.approx(21.4)
    model, hw = load_model("llama-3.1-405b"), load_hardware("gb200-nvl72")
    lay = Layout.helix(kvp=8, tpa=8)
    ttl = {eta: float(simulate(model, replace(hw, comm_overlap_efficiency=eta), lay, 32, 10**6,
                               hopb_chunks=32).ttl_s) for eta in (0.0, 0.5, 1.0)}
    assert ttl[1.0] == float(simulate(model, hw, lay, 32, 10**6, hopb_chunks=32).ttl_s)  # preset: eta = 1
    assert ttl[1.0] < ttl[0.5] < ttl[0.0]
    # eta = 0: every chunk's attention and all-to-all back to back, the overlap hides nothing
    assert ttl[0.0] >= float(simulate(model, hw, lay, 32, 10**6, overlap="serial").ttl_s) * (1 - 1e-12)


def test_each_hopb_chunk_pays_its_attention_and_merge_launches_and_an_exchange_latency():
    # eta = 0, B = 32 in c equal chunks: every chunk runs attention (1 launch), its all-to-all (alpha)
    # and its merge (1 launch) back to back, so against the serial step each extra chunk costs, per
    # layer, 2 launches + alpha; the bandwidth parts add up to the serial ones.
    from dataclasses import replace

    from helix import Layout, load_hardware, load_model, simulate
    from helix.cost import collectives

    model = load_model("llama-3.1-405b")
    # the roofline model (engine "none"): one launch per op, alpha per exchange, as counted above
    hw = replace(load_hardware("gb200-nvl72", engine="none"), comm_overlap_efficiency=0.0)
    lay = Layout.helix(kvp=8, tpa=8)
    alpha, _ = collectives.all_to_all_alpha_beta(8, hw)
    serial = float(simulate(model, hw, lay, 32, 10**6, overlap="serial").ttl_s)
    for c in (2, 4, 32):
        r = simulate(model, hw, lay, 32, 10**6, hopb_chunks=c)
        per_layer = (c - 1) * (2 * hw.kernel_launch_s + float(alpha))
        assert float(r.ttl_s) - serial == pytest.approx(model.num_layers * per_layer, rel=1e-9)
        # the breakdown reads true: the all-to-all never shows more exposed time than it costs serially;
        # the per-chunk launches and latencies are the chunking's own term
        one = float(r.comm_total_s["kvp_all_to_all"])
        assert float(r.breakdown["kvp_all_to_all"]) <= one * (1 + 1e-12)
        assert float(r.breakdown["hopb_chunking"]) == pytest.approx(model.num_layers * per_layer, rel=1e-9)


def test_per_request_hopb_off_pays_one_collective_per_request():
    """overlap="per_request": the KVP all-to-all as B_loc exposed collectives, each on one request's bytes
    (the paper's Fig. 3 OFF); "serial" is one batched collective. Hand check against the collective form."""
    from helix import Layout, load_hardware, load_model, simulate
    from helix.cost import collectives
    from helix.cost.messages import step_messages
    from helix.specs import PrecisionSpec

    model, hw, batch = load_model("deepseek-r1"), load_hardware("gb200-nvl72"), 16
    lay = Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    serial = simulate(model, hw, lay, batch, 10**6, overlap="serial")
    per_request = simulate(model, hw, lay, batch, 10**6, overlap="per_request")
    m = {x.phase: x for x in step_messages(model, PrecisionSpec(), "helix", 1, 64, 1, 8, 8, 1, batch, 1)}
    m = m["kvp_all_to_all"]
    one = collectives.collective_s(m.kind, m.n_bytes / batch, m.group_size, hw, m.table, m.experts)
    assert float(per_request.comm_exposed_s["kvp_all_to_all"]) == pytest.approx(m.calls_per_step * batch * one)
    assert float(per_request.comm_total_s["kvp_all_to_all"]) == pytest.approx(m.calls_per_step * batch * one)
    assert float(serial.comm_exposed_s["kvp_all_to_all"]) < float(per_request.comm_exposed_s["kvp_all_to_all"])
    others = {k for k in serial.breakdown if k != "kvp_all_to_all"}
    assert all(float(serial.breakdown[k]) == float(per_request.breakdown[k]) for k in others)
