"""Paper App. A (Fig. 1) on the `ideal` preset: exact DRAM-read latencies per layer.

Llama-405B as in the paper (F = 65,536), B = 8, S = 10^6, FP4 (0.5 B), MemBW = 8000 GB/s.
"""

import numpy as np
import pytest

from helix import Layout, load_hardware, load_model, simulate
from helix.specs import PrecisionSpec
from helix.step import evaluate

MODEL = load_model("llama-405b-paper")
IDEAL = load_hardware("ideal")
B, S, L = 8, 10**6, 126


def per_layer_us(result, term):
    return float(result.breakdown[term]) / L * 1e6


@pytest.mark.parametrize(("tp", "kv_us"), [(1, 1024), (2, 512), (4, 256), (8, 128), (16, 128), (32, 128), (64, 128)])
def test_kv_read_vs_tp_plateaus_past_k(tp, kv_us):
    r = simulate(MODEL, IDEAL, Layout.tp(tp), B, S)
    assert per_layer_us(r, "attention") == pytest.approx(kv_us, rel=1e-12)
    # the bytes behind it: B x 2 x ceil(K/TP) x Hsz x S x 0.5
    assert float(r.hbm_read_bytes_per_gpu["attention"]) / L == 8 * 2 * -(-8 // tp) * 128 * S * 0.5


@pytest.mark.parametrize("kvp", [1, 2, 4, 8, 16, 32, 64])
def test_kv_read_vs_kvp_with_tpa_8(kvp):
    # App. A's right panel varies KVP at TPA = 8 regardless of the GPU count, so call evaluate directly.
    r = evaluate(MODEL, IDEAL, PrecisionSpec(), "helix", 8, kvp, 1, 8 * kvp, 1, 1, B, S)
    assert per_layer_us(r, "attention") == pytest.approx(128 / kvp, rel=1e-12)


def test_weight_read_at_tp1_is_237_us():
    r = simulate(MODEL, IDEAL, Layout.tp(1), B, S)
    weights_us = sum(per_layer_us(r, t) for t in ("qkv_projection", "o_projection", "ffn"))
    H, Q, K, Hsz, F = 16384, 128, 8, 128, 65536
    expected = (2 * H * Q * Hsz + 2 * H * K * Hsz + 3 * H * F) * 0.5 / 8e12 * 1e6
    assert expected == pytest.approx(237.0, abs=0.05)
    assert weights_us == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tp", [2, 4, 8, 16, 32, 64])
def test_ffn_weight_read_falls_as_one_over_tp(tp):
    base = simulate(MODEL, IDEAL, Layout.tp(1), B, S)
    r = simulate(MODEL, IDEAL, Layout.tp(tp), B, S)
    assert per_layer_us(r, "ffn") == pytest.approx(per_layer_us(base, "ffn") / tp, rel=1e-12)
    # Q and O shards fall as 1/TP too; K and V stop at one head per GPU past K = 8 (App. A's ceil(K/TPA)).
    H, Hsz = 16384, 128
    qkvo = (2 * H * (128 / tp) * Hsz + 2 * H * -(-8 // tp) * Hsz) * 0.5 / 8e12 * 1e6
    assert per_layer_us(r, "qkv_projection") + per_layer_us(r, "o_projection") == pytest.approx(qkvo, rel=1e-12)


def test_reference_table_values_paper_md():
    """reference/paper.md §10.1 weight-read column: 118.5, 59.2, 29.6, 14.9, 7.6, 3.9 us."""
    got = []
    for tp in (2, 4, 8, 16, 32, 64):
        r = simulate(MODEL, IDEAL, Layout.tp(tp), B, S)
        got.append(sum(per_layer_us(r, t) for t in ("qkv_projection", "o_projection", "ffn")))
    np.testing.assert_allclose(got, [118.5, 59.2, 29.6, 14.9, 7.6, 3.9], atol=0.06)
