"""Calibration's pure parts: the fits recover known alpha and beta, and price what the simulator prices.

Synthetic timings are written out by hand from the alpha-beta forms (reference/hardware_models.md
§2.1), never by calling the fitting code's own design matrix.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from validation_cases import SIZES, synthetic_collectives

from helix.cost import collectives
from helix.specs.hardware import load_hardware
from helix.validation import fit, launches
from helix.validation.timing import last_arrival

CPU_PROFILE = Path(__file__).resolve().parents[1] / "docs" / "validation-cpu" / "cpu-profile.yaml"


# ---------------------------------------------------------------- fit_line


def test_fit_line_recovers_alpha_beta_exactly():
    alpha, beta = 35e-6, 1 / 2.5e9  # 35 us, 2.5 GB/s
    f = fit.fit_line(SIZES, alpha + beta * SIZES)
    assert f.coefficients["alpha"] == pytest.approx(alpha, rel=1e-9)
    assert f.coefficients["beta"] == pytest.approx(beta, rel=1e-9)
    assert f.max_abs_error < 1e-9


def test_fit_line_with_noise_stays_within_noise():
    rng = np.random.default_rng(0)
    alpha, beta = 80e-6, 1 / 4e9
    t = (alpha + beta * SIZES) * (1 + 0.02 * rng.standard_normal(SIZES.size))
    f = fit.fit_line(SIZES, t)
    assert f.coefficients["alpha"] == pytest.approx(alpha, rel=0.03)
    assert f.coefficients["beta"] == pytest.approx(beta, rel=0.03)
    assert 0.005 < f.median_abs_error < 0.04  # the residuals are the injected 2 % noise


def test_relative_fit_weighs_small_messages():
    # One 10x outlier at the largest size: relative LSQ keeps alpha, absolute LSQ does not.
    alpha, beta = 50e-6, 1e-9
    t = alpha + beta * SIZES
    t[-1] *= 1.5
    rel = fit.fit_line(SIZES, t, relative=True).coefficients["alpha"]
    ab = fit.fit_line(SIZES, t, relative=False).coefficients["alpha"]
    assert abs(rel - alpha) / alpha < 0.35
    assert abs(ab - alpha) / alpha > abs(rel - alpha) / alpha


# ---------------------------------------------------------------- collectives


def test_fit_collectives_recovers_every_term():
    truth = {"sync_latency_s": 40e-6, "ring_base_latency_s": 25e-6, "ring_hop_latency_s": 7e-6,
             "s_per_byte": 1 / 3e9}
    f = fit.fit_collectives(*synthetic_collectives(*truth.values()))
    for k, v in truth.items():
        assert f.coefficients[k] == pytest.approx(v, rel=1e-6), k
    assert f.max_abs_error < 1e-6


def test_fit_collectives_two_ranks_separates_ring_base_and_hop():
    # p = 2 only: AR has 2 ring steps, AG one, so base and hop are still identifiable.
    truth = (30e-6, 60e-6, 20e-6, 1 / 1.5e9)
    f = fit.fit_collectives(*synthetic_collectives(*truth, ps=(2,)))
    got = [f.coefficients[k] for k in fit.COLLECTIVE_TERMS]
    np.testing.assert_allclose(got, truth, rtol=1e-6)


def test_fit_collectives_with_noise():
    rng = np.random.default_rng(1)
    kinds, ns, groups, t = synthetic_collectives(100e-6, 150e-6, 0.0, 1 / 1e9, ps=(2,))
    f = fit.fit_collectives(kinds, ns, groups, t * (1 + 0.03 * rng.standard_normal(t.size)))
    assert f.coefficients["s_per_byte"] == pytest.approx(1e-9, rel=0.05)
    assert f.coefficients["sync_latency_s"] == pytest.approx(100e-6, rel=0.08)
    assert f.coefficients["ring_base_latency_s"] + 2 * f.coefficients["ring_hop_latency_s"] == pytest.approx(
        150e-6, rel=0.08)


def test_nonnegative_lstsq_clamps_and_is_optimal():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    b = np.array([3.0, 2.0, 1.0])  # unconstrained slope -1: the best non-negative slope is 0
    x = fit.nonnegative_lstsq(a, b)
    np.testing.assert_allclose(x, [2.0, 0.0], atol=1e-12)  # mean of b with the slope clamped


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 points"):
        fit.fit_line([1.0], [1.0])
    with pytest.raises(ValueError, match="unknown collective kind 'broadcast'"):
        fit.collective_design(["broadcast"], [8], [2])
    with pytest.raises(ValueError, match="times must be > 0"):
        fit.fit_line([1.0, 2.0], [1.0, 0.0])


def test_summarize_errors():
    s = fit.summarize_errors(fit.relative_errors([1.1, 0.8, 2.0], [1.0, 1.0, 1.0]))
    assert s == pytest.approx({"median_abs": 0.2, "max_abs": 1.0, "median": 0.1, "points": 3})


# ---------------------------------------------------------------- the fit's forms are the simulator's


def _profile_from(coefficients: dict[str, float], p: int) -> object:
    """The committed CPU profile (gloo: ring only) carrying other fitted coefficients and p ranks."""
    return replace(load_hardware(CPU_PROFILE), scale_up_domain_gpus=p,
                   link_bytes_per_s_per_direction=1 / coefficients["s_per_byte"],
                   scale_out_bytes_per_s_per_direction=1 / coefficients["s_per_byte"],
                   sync_latency_s=coefficients["sync_latency_s"],
                   ring_base_latency_s=coefficients["ring_base_latency_s"],
                   ring_hop_latency_s=coefficients["ring_hop_latency_s"])


@pytest.mark.parametrize("kind", fit.KINDS)
def test_fit_prediction_equals_the_simulators_collective_time(kind):
    # The committed CPU profile (gloo: ring only): a 64-byte message at p = 2 priced by the fit's form and by
    # helix.cost.collectives.collective_s. The all-gather is the ring's 0.6134 + 0.2656 ms (+ 32 B of wire),
    # not the all-to-all's sync (0.609 ms), which the simulator charged before.
    hw = load_hardware(CPU_PROFILE)
    coefficients = {"sync_latency_s": hw.sync_latency_s, "ring_base_latency_s": hw.ring_base_latency_s,
                    "ring_hop_latency_s": hw.ring_hop_latency_s, "s_per_byte": 1 / hw.link_bytes_per_s_per_direction}
    fitted = fit.predicted_collective_s([kind], [64.0], [2], coefficients)[0]
    assert fitted == pytest.approx(float(collectives.collective_s(kind, 64.0, 2, hw)), rel=1e-12)
    if kind == "all_gather":
        assert fitted == pytest.approx(0.6134e-3 + 0.2656e-3 + 32 / hw.link_bytes_per_s_per_direction, rel=1e-12)


def test_fitted_profile_prices_every_measured_collective_as_the_fit():
    truth = {"sync_latency_s": 40e-6, "ring_base_latency_s": 25e-6, "ring_hop_latency_s": 7e-6,
             "s_per_byte": 1 / 3e9}
    kinds, ns, groups, t = synthetic_collectives(*truth.values(), ps=(2, 4))
    f = fit.fit_collectives(kinds, ns, groups, t)
    hw = _profile_from(f.coefficients, 4)
    simulated = [float(collectives.collective_s(k, n, p, hw)) for k, n, p in zip(kinds, ns, groups, strict=True)]
    np.testing.assert_allclose(simulated, t, rtol=1e-6)  # the hand-written forms, through the simulator


def test_all_gather_takes_the_direct_form_only_with_peer_memory():
    gpu = load_hardware("h100")  # ring, one-shot, two-shot, NVLS: peer memory, so min(ring, sync)
    alpha, _ = collectives.all_gather_alpha_beta(8, gpu)
    ring = gpu.ring_base_latency_s + 7 * gpu.ring_hop_latency_s
    assert float(alpha) == pytest.approx(min(ring, gpu.sync_latency_s))
    cpu = load_hardware(CPU_PROFILE)  # gloo: [ring]
    alpha, beta = collectives.all_gather_alpha_beta(2, cpu)
    assert float(alpha) == pytest.approx(cpu.ring_base_latency_s + cpu.ring_hop_latency_s)
    assert float(beta) == pytest.approx(0.5 / cpu.link_bytes_per_s_per_direction)


# ---------------------------------------------------------------- last arrival, launches


def test_last_arrival_times_each_call_from_the_last_rank_to_enter():
    # [ranks][calls][(entry, exit)]: call 0, rank 1 arrives 0.3 late; call 1, rank 0 arrives 0.1 late
    spans = [[(1.0, 1.5), (2.1, 2.3)],
             [(1.3, 1.5), (2.0, 2.3)]]
    seconds, wait = last_arrival(spans)
    np.testing.assert_allclose(seconds, [0.2, 0.2])
    np.testing.assert_allclose(wait, [0.3 / 2, 0.1 / 2])
    with pytest.raises(ValueError, match="different numbers"):
        last_arrival([spans[0], spans[1][:1]])


def test_launches_come_from_the_op_inventory():
    # a dense GQA layer: qkv, attention, o_projection 1 each, the FFN 2; the combine at KVP > 1; embedding + LM head
    assert launches.per_dense_layer(launches.PROBE_MODEL, 1) == 5
    assert launches.per_dense_layer(launches.PROBE_MODEL, 2) == 6
    assert launches.per_step(launches.PROBE_MODEL, 1) == 2
    by_term = launches.launches_by_term(launches.PROBE_MODEL, 2)
    assert by_term["attention"]["combine"] == 1 and by_term["dense_ffn"] == {"ffn": 2}
