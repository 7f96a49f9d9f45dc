"""The development points: each printed `helix simulate` command reproduces its row, the operating batch
is what its docstring says, and the summary counts as defined."""

import json
import shlex

import pytest

from helix.cli import main
from helix.validation import deployments as dep


def _by_id(point_id):
    return next(d for d in dep.DEVELOPMENT if d.id == point_id)


@pytest.mark.parametrize("point_id", ["sglang-h200-dp8-ep8-9.4", "sglang-h100-ep72"])
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
