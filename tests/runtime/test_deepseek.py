"""DeepSeek-V3 (MLA + MoE) on gloo against Hugging Face: tokens, logits, expert load, traffic, bad input.

One spawn per layout runs both decode configurations (RUNS); the tests below only read the results.
Layouts: Helix KVP = N in {1, 2, 4, 8} with several TPF x EP grids, and the DP+EP baseline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from helix.cost.messages import step_messages
from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime.decoder import DecodeOptions
from helix.runtime.deepseek import model_spec
from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, run_job, run_spawned
from helix.specs.precision import PrecisionSpec

B, T, NEW = 4, 21, 6  # 21 prompt tokens: not a multiple of any block; B = 4 divides DP+EP's N = 4
E, K_TOP, MOE_LAYERS = 16, 4, 3  # tiny-deepseek: 16 experts, top-4, layers 1..3 are MoE
RUNS = {
    "rr4": RunSpec(NEW, DecodeOptions(block_tokens=4, return_logits=True)),
    "contiguous16": RunSpec(NEW, DecodeOptions(block_tokens=16, ownership="contiguous", hopb_chunks=2,
                                               return_logits=True)),
}
LAYOUTS = {
    "kvp2-tpf1-ep2": Layout.helix(kvp=2, tpf=1, ep=2),
    "kvp4-tpf2-ep2": Layout.helix(kvp=4, tpf=2, ep=2),
    "kvp8-tpf2-ep4": Layout.helix(kvp=8, tpf=2, ep=4),
    "kvp4-tpf4-ep1": Layout.helix(kvp=4, tpf=4, ep=1),
    "dp_ep4": Layout.dp_ep(4),
}


@dataclass(frozen=True)
class Reference:
    payload: object
    prompt: torch.Tensor
    tokens: torch.Tensor  # [B, NEW]
    logits: torch.Tensor  # [B, NEW, V]
    loads: list[torch.Tensor]  # per forward (prefill, decode0, ...): [MoE layers, E] from HF's router


def _job(prompt, layout: Layout) -> Job:
    return Job("tiny-deepseek", layout, prompt, tuple(RUNS.values()))


@pytest.fixture(scope="module")
def reference() -> Reference:
    prompt = torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(3))
    payload, hf = prepare(_job(prompt, Layout.helix(kvp=1)))
    calls: dict[int, list[torch.Tensor]] = {}
    hooks = [layer.mlp.gate.register_forward_hook(
        lambda _m, _i, out, i=i: calls.setdefault(i, []).append(torch.bincount(out[2].reshape(-1), minlength=E)))
        for i, layer in enumerate(hf.model.layers) if hasattr(layer.mlp, "gate")]
    with torch.no_grad():
        out = hf.generate(prompt, max_new_tokens=NEW, do_sample=False, output_logits=True,
                          return_dict_in_generate=True)
    for h in hooks:
        h.remove()
    loads = [torch.stack([calls[i][step] for i in sorted(calls)]) for step in range(NEW)]
    return Reference(payload, prompt, out.sequences[:, T:], torch.stack(out.logits, dim=1), loads)


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=str)
def runs(request, reference):
    layout = LAYOUTS[request.param]
    payload = dataclasses.replace(reference.payload, job=_job(reference.prompt, layout))
    per_rank = run_spawned(payload, timeout_s=120)
    return layout, {name: [ranks[i] for ranks in per_rank] for i, name in enumerate(RUNS)}


@pytest.fixture(scope="module")
def single(reference):
    """KVP = 1 (TPF = EP = 1) in this process: no collectives at all."""
    return {name: r for name, r in zip(RUNS, run_job(0, 1, "", reference.payload), strict=True)}


def test_single_device_equals_hf(single, reference):
    for name, r in single.items():
        assert torch.equal(r.tokens, reference.tokens), name
        torch.testing.assert_close(torch.stack(r.logits, dim=1), reference.logits, rtol=0, atol=1e-4)
        assert r.traffic == []


@pytest.mark.slow
def test_tokens_equal_hf_on_every_rank_and_logits_within_1e_4(runs, reference):
    layout, results = runs
    for name, ranks in results.items():
        for rank, r in enumerate(ranks):
            assert torch.equal(r.tokens, reference.tokens), (layout.describe(), name, rank)
        logits = torch.stack(ranks[0].logits, dim=1)  # [B, NEW, V]
        err = (logits - reference.logits).abs()
        assert float(err.max()) < 1e-4, f"{name}: max {float(err.max()):.2e}, mean {float(err.mean()):.2e}"


@pytest.mark.slow
def test_expert_load_equals_hf_routing_and_sums_to_tokens_times_top_k(runs, reference):
    layout, results = runs
    for r in results["rr4"]:
        loads = r.extras["expert_loads"]
        assert list(loads) == ["prefill"] + [f"decode{i}" for i in range(NEW - 1)]
        for step, (name, load) in enumerate(loads.items()):
            tokens = B * T if name == "prefill" else B
            assert load.shape == (MOE_LAYERS, E)
            assert load.sum(dim=1).tolist() == [tokens * K_TOP] * MOE_LAYERS
            assert torch.equal(load, reference.loads[step]), (layout.describe(), name)


@pytest.mark.slow
def test_empty_kv_shards_under_a_contiguous_prompt(runs):
    layout, results = runs
    kv = results["contiguous16"][0].kv_tokens
    # positions 0..25 cached (21 prompt + 5 decode appends): block 0 -> rank 0, block 1 -> rank 1
    if layout.strategy == "dp_ep":
        assert kv == [T + NEW - 1] * layout.dp
    else:
        assert kv == [16, 10] + [0] * (layout.kvp - 2)


def _expected(layout: Layout) -> dict[str, tuple[str, int, int, int]]:
    """{phase: (kind, group, n_bytes per call, calls)} of one decode step, collectives with group > 1."""
    from helix.runtime.deepseek import arch_from_hf_config
    from helix.runtime.deepseek_hf import tiny_deepseek_config

    spec = model_spec(arch_from_hf_config(tiny_deepseek_config()), "tiny-deepseek")
    msgs = step_messages(spec, PrecisionSpec.uniform("fp32"), layout.strategy, layout.tpa, layout.kvp, layout.dp,
                         layout.tpf, layout.ep, 1, B)
    return {m.phase: (m.kind, int(m.group_size), int(m.n_bytes), int(m.calls_per_step))
            for m in msgs if int(m.group_size) > 1 and int(m.calls_per_step) > 0}


@pytest.mark.slow
def test_decode_traffic_equals_the_simulator_formulas(runs):
    layout, results = runs
    expected = _expected(layout)
    H, Q, v = 64, 8, 16
    if layout.strategy == "helix":  # hand checks: B Q (v + 1) 4 bytes; B H 4; EP B H 4
        assert expected["kvp_all_to_all"][2] == B * Q * (v + 1) * 4 == 2176
        assert expected["o_projection_all_reduce"][2] == B * H * 4
        if layout.ep > 1:
            assert expected["moe_ep_all_gather"][2:] == (layout.ep * B * H * 4, MOE_LAYERS)
    else:  # DP+EP: B_loc k rows of H per rank, for dispatch and combine
        assert expected["moe_dispatch_all_to_all"][2] == (B // layout.dp) * K_TOP * H * 4
    for step in range(NEW - 1):
        combine_sent = [0] * MOE_LAYERS
        for rank, r in enumerate(results["rr4"]):
            got: dict[str, list] = {}
            for c in r.traffic:
                if c.step == f"decode{step}":
                    got.setdefault(c.phase, []).append((c.kind, c.group_size, c.n_bytes))
            if layout.strategy == "dp_ep":
                # the per-expert row counts (E int64) that size the dispatch
                assert expected["moe_dispatch_counts"] == ("all_to_all", layout.ep, E * 8, MOE_LAYERS)
                # a rank's combine sends back what it received: routing-dependent per rank, the formula on average
                for i, (_, _, n) in enumerate(got.pop("moe_combine_all_to_all")):
                    combine_sent[i] += n
            assert set(got) == set(expected) - {"moe_combine_all_to_all"}, (rank, step)
            for phase, got_calls in got.items():
                kind, group, n_bytes, calls = expected[phase]
                assert got_calls == [(kind, group, n_bytes)] * calls, (rank, step, phase)
        if layout.strategy == "dp_ep":
            kind, group, n_bytes, calls = expected["moe_combine_all_to_all"]
            assert combine_sent == [layout.ep * n_bytes] * calls


@pytest.mark.slow
def test_hopb_splits_the_mla_all_to_all_per_chunk(runs):
    layout, results = runs
    if layout.strategy != "helix":
        pytest.skip("no KVP all-to-all under DP+EP")
    sent = [c.n_bytes for c in results["contiguous16"][0].traffic
            if c.step == "decode0" and c.phase == "kvp_all_to_all"]
    assert sent == [2 * 8 * 17 * 4] * (2 * 4)  # 2 chunks of 2 requests, 4 layers


# ---------------------------------------------------------------- bad input


def test_bad_layouts_are_refused_before_spawning(reference):
    with pytest.raises(HelixInputError, match=r"ep: must divide the expert count \(16\), got 3"):
        prepare(_job(reference.prompt, Layout.dp_ep(3)))
    with pytest.raises(HelixInputError, match=r"tpa: helix needs tpa <= KV heads \(1\) \(MLA has one latent KV "
                                              r"head, so TPA must be 1\), got 2$"):
        prepare(_job(reference.prompt, Layout.helix(kvp=2, tpa=2)))
    with pytest.raises(HelixInputError, match=r"kvp: must divide the query heads \(8\) for the all-to-all, got 16"):
        prepare(_job(reference.prompt, Layout.helix(kvp=16)))  # Q v = 128 divides 16, the heads do not
    with pytest.raises(HelixInputError, match=r"strategy: the runtime runs helix or dp_ep, got 'medha'"):
        _job(reference.prompt, Layout.medha(kvp=2, tp=1))
    with pytest.raises(HelixInputError, match=r"world_size: must equal kvp\*tpa \(=2\)"):
        run_job(0, 3, "", dataclasses.replace(reference.payload, job=_job(reference.prompt, Layout.helix(kvp=2))))
    with pytest.raises(HelixInputError, match=r"world_size: must equal ep \(=4\)"):
        run_job(0, 3, "", dataclasses.replace(reference.payload, job=_job(reference.prompt, Layout.dp_ep(4))))


@pytest.mark.slow
def test_every_rank_reports_the_same_input_error(reference):
    bad = dataclasses.replace(reference.payload, job=_job(reference.prompt, Layout.helix(kvp=1, tpa=2)))
    with pytest.raises(WorkerError) as info:
        run_spawned(bad, timeout_s=60)
    failures = info.value.failures
    assert sorted(failures) == [0, 1]
    assert {(kind, field) for kind, field, _, _ in failures.values()} == {("HelixInputError", "tpa")}
    assert "MLA has one latent KV head, so TPA must be 1" in str(info.value.input_error())
