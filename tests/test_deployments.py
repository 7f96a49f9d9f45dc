"""The development points: each printed `helix simulate` command reproduces its row, the operating batch
is what its docstring says, and the summary counts as defined."""

import json
import shlex

import pytest

from helix.cli import main
from helix.validation import deployments as dep


def _by_id(point_id):
    return next(d for d in dep.DEVELOPMENT if d.id == point_id)


@pytest.mark.parametrize("point_id", ["sglang-h200-dp8-ep8-9.4", "sglang-h100-ep72", "sglang-h100-ep72-no-tbo",
                                      "deepseek-profile"])
def test_printed_command_reproduces_the_row(capsys, point_id):
    r = dep.row(_by_id(point_id))
    argv = shlex.split(r["command"])[1:] + ["--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ttl_s"] * 1e3 == pytest.approx(r["ttl_ms"], rel=1e-12)
    assert r["predicted"] == pytest.approx(r["ttl_ms"]) and r["error"] == pytest.approx(r["ttl_ms"] / r["measured"] - 1)
    assert r["breakdown_ms"] and sum(r["breakdown_ms"].values()) == pytest.approx(r["ttl_ms"], rel=1e-9)


def test_tokens_per_gpu_point_runs_at_the_largest_batch_that_keeps_the_per_user_speed():
    d = _by_id("ds-prod")
    batch = dep.operating_batch(d)
    assert float(dep.predict(d, batch).tokens_per_s_per_user) >= d.tokens_per_s_per_user
    assert float(dep.predict(d, batch + d.layout.dp).tokens_per_s_per_user) < d.tokens_per_s_per_user


def test_summary_counts_too_fast_by_metric():
    table = [{"metric": "tpot_ms", "error": -0.2}, {"metric": "tpot_ms", "error": 0.1},
             {"metric": "tokens_per_s_per_gpu", "error": 0.3}, {"metric": "tokens_per_s_per_gpu", "error": -0.4}]
    s = dep.summary(table)
    assert s == {"median_abs_error": pytest.approx(0.25), "max_abs_error": pytest.approx(0.4), "too_fast": 2}


def test_the_h100_points_carry_the_skew_their_source_measured():
    # the blog's EPLB case study: balancedness (mean / max tokens per GPU) 0.878 on average, so the hottest
    # rank holds 1 / 0.878 = 1.14 x the mean; the TBO ablation point is the same deployment without overlap
    on, off = _by_id("sglang-h100-ep72"), _by_id("sglang-h100-ep72-no-tbo")
    assert on.options["expert_imbalance"] == off.options["expert_imbalance"] == pytest.approx(1 / 0.878, abs=0.005)
    assert "--expert-imbalance 1.14" in dep.row(on)["command"] and "--tbo" not in dep.row(off)["command"]
    # measured: 22,310 tokens/s per node with overlap, 25.5 % faster than without: 115.2 ms per step
    assert off.measured == pytest.approx(256 * 8 / (22310 / 1.255) * 1e3, rel=1e-12)
