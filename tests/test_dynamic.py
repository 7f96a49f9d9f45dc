"""The dynamic re-sharding experiment: the switching rule by hand, the trace, and the report section."""

import numpy as np
import pytest

from helix.cost import reshard
from helix.experiments import EXPERIMENTS, dynamic
from helix.experiments.common import Context

INF = np.inf


@pytest.mark.parametrize(("stall", "total", "switch_at"), [
    (1.0, 1000 + 1 + 500 + 500, 1000),  # gain 0.5 s/step x 1000 steps beats 1 s: switch at segment 1
    (600.0, 1000 + 1000 + 600 + 500, 2000),  # 500 s of gain does not pay 600 s; forced when 0 no longer fits
])
def test_policy_switches_when_the_gain_beats_the_stall(monkeypatch, stall, total, switch_at):
    monkeypatch.setattr(dynamic, "switch_cost", lambda ctx, model, lay, i, j, cache: (100.0, stall))
    ttl = np.array([[1.0, 1.0, INF], [2.0, 0.5, 0.5]])
    got, moved, switches, chosen = dynamic.dynamic_policy(None, None, None, ttl, np.zeros(3), np.array([True, True]))
    assert dynamic.SEGMENT_STEPS == 1000
    assert got == pytest.approx(total) and moved == 100.0
    assert switches == [(switch_at, 0, 1, 100.0, stall)]
    assert chosen.tolist() == ([0, 1, 1] if switch_at == 1000 else [0, 0, 1])


def test_trace_is_deterministic_and_grows():
    a, started = dynamic.session_trace(4, steps=20_000, segment=1000)
    b, _ = dynamic.session_trace(4, steps=20_000, segment=1000)
    assert a.tolist() == b.tolist() and len(a) == 20 and started >= 4
    rng = np.random.default_rng(dynamic.SEED)  # the first draws: 4 prompts log-uniform 8K..128K (+ the half segment)
    prompts = []
    for _ in range(4):
        prompts.append(np.exp(rng.uniform(np.log(8e3), np.log(128e3))))
        rng.integers(1000, 4001), rng.uniform(0, 1)
    assert a[0] == int(np.mean(prompts) + 500)
    assert a[-1] > a[0]


def test_section_quick(tmp_path):
    assert dynamic in EXPERIMENTS
    ctx = Context(out=tmp_path, quick=True)
    section = dynamic.run(ctx)
    assert section.key == "dynamic" and (tmp_path / "dynamic_reshard.png").stat().st_size > 5_000
    rows = (tmp_path / "dynamic_reshard.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(dynamic.MODELS)
    res = dynamic.compare(ctx, dynamic.LLAMA_PAPER_F)
    # the hindsight static layout never beats the causal policy by more than its stalls
    assert res["dynamic_s"] <= res["static_s"] + res["stall_s"]
    assert res["moved"] == pytest.approx(sum(s[3] for s in res["switches"]))
    for step, i, j, size, _ in res["switches"]:
        lay, k = res["lay"], step // dynamic.SEGMENT_STEPS
        model = ctx.model(res["model"])
        per_token = model.num_layers * 8 * 2 * 128 * 0.5  # Llama-405B: 8 KV heads x (K, V) x 128 dims, FP4
        kv = reshard.moved_fraction(lay["kvp"][i], lay["tpa"][i], lay["kvp"][j], lay["tpa"][j], 8) * (
            res["slots"] * res["means"][k] * per_token)
        assert size >= kv
