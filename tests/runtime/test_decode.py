"""Helix decoding on gloo against Hugging Face: tokens, logits, hidden states, traffic, KV balance, HOP-B.

One spawn per layout runs every decode configuration (RUNS) on the same process group; the tests
below only read those results.
"""

from __future__ import annotations

import pytest
import torch
from runtime_cases import BATCH, NEW_TOKENS, PROMPT_TOKENS

from helix.cost.messages import step_messages
from helix.layout import Layout
from helix.runtime.decoder import DecodeOptions
from helix.runtime.launch import Job, RunSpec, prepare, run_spawned
from helix.runtime.llama import model_spec
from helix.specs.precision import PrecisionSpec

LAYOUTS = [(1, 1), (2, 1), (4, 1), (2, 2), (4, 2), (8, 1)]  # (KVP, TPA)
NUM_LAYERS = 3  # tiny-llama
RUNS = {
    "base": RunSpec(NEW_TOKENS, DecodeOptions(return_logits=True, capture_hidden=True)),
    "hopb": RunSpec(NEW_TOKENS, DecodeOptions(return_logits=True, hopb_chunks=BATCH)),
    "last_rank": RunSpec(NEW_TOKENS, DecodeOptions(ownership="last_rank")),
    "contiguous": RunSpec(NEW_TOKENS, DecodeOptions(ownership="contiguous", block_tokens=4)),
    "round_robin_4": RunSpec(NEW_TOKENS, DecodeOptions(block_tokens=4, prefill_chunk_tokens=10)),
}
# KV tokens per KVP rank after prefill (37 tokens = blocks of 16, 16, 5) under a contiguous split
CONTIGUOUS_PROMPT_16 = {1: [37], 2: [32, 5], 4: [16, 16, 5, 0], 8: [16, 16, 5, 0, 0, 0, 0, 0]}


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda p: f"kvp{p[0]}-tpa{p[1]}")
def helix(request, reference):
    kvp, tpa = request.param
    payload, _ = prepare(Job("tiny-llama", Layout.helix(kvp=kvp, tpa=tpa), reference.prompt, tuple(RUNS.values())))
    per_rank = run_spawned(payload, timeout_s=120)
    results = {name: [ranks[i] for ranks in per_rank] for i, name in enumerate(RUNS)}
    return kvp, tpa, results


def _kv_per_kvp_rank(kv_tokens: list[int], kvp: int, tpa: int) -> list[int]:
    """S_loc by KVP rank; the TPA ranks of one KVP rank hold the same tokens (other heads)."""
    by_rank = [kv_tokens[k * tpa:(k + 1) * tpa] for k in range(kvp)]
    assert all(len(set(r)) == 1 for r in by_rank), by_rank
    return [r[0] for r in by_rank]


@pytest.mark.slow
def test_greedy_tokens_equal_hf_generate_on_every_rank_for_every_option(helix, reference):
    _, _, results = helix
    for name, ranks in results.items():
        for rank, r in enumerate(ranks):
            assert torch.equal(r.tokens, reference.tokens), f"{name}, rank {rank}"


@pytest.mark.slow
@pytest.mark.parametrize("run", ["base", "hopb"])
def test_logits_within_1e_4_of_hf(helix, reference, run):
    logits = torch.stack(helix[2][run][0].logits, dim=1)  # [B, NEW_TOKENS, V]
    torch.testing.assert_close(logits, reference.logits, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_one_layer_and_every_layer_match_hf_hidden_states(helix, reference):
    hidden = helix[2]["base"][0].hidden  # prefill residual stream after each layer, [B, T, H]
    assert len(hidden) == NUM_LAYERS
    # fp32 with |h| up to ~10: a few ulps differ between HF's eager softmax and exp(s - LSE)
    for i in range(NUM_LAYERS - 1):  # HF's last entry is after the final norm
        torch.testing.assert_close(hidden[i], reference.hidden[i + 1][:, :PROMPT_TOKENS], rtol=1e-5, atol=5e-5)


@pytest.mark.slow
def test_hopb_gives_the_same_output(helix):
    base, hopb = helix[2]["base"][0], helix[2]["hopb"][0]
    assert torch.equal(base.tokens, hopb.tokens)
    torch.testing.assert_close(torch.stack(hopb.logits), torch.stack(base.logits), rtol=0, atol=1e-6)


def _expected(kvp: int, tpa: int) -> dict[str, tuple[str, int, int, int]]:
    """{phase: (kind, group size, bytes per call, calls)} from the simulator, collectives actually issued."""
    spec = model_spec(_tiny_arch(), "tiny-llama")
    n = kvp * tpa
    msgs = step_messages(spec, PrecisionSpec.uniform("fp32"), "helix", tpa, kvp, 1, n, 1, 1, BATCH)
    return {m.phase: (m.kind, int(m.group_size), int(m.n_bytes), int(m.calls_per_step))
            for m in msgs if int(m.group_size) > 1 and int(m.calls_per_step) > 0}


def _tiny_arch():
    from helix.runtime.llama import arch_from_hf_config
    from helix.runtime.registry import get_model

    return arch_from_hf_config(get_model("tiny-llama").build().config)


@pytest.mark.slow
def test_decode_traffic_equals_the_simulator_formulas_exactly(helix):
    kvp, tpa, results = helix
    expected = _expected(kvp, tpa)
    if kvp * tpa > 1:  # hand check of one formula: B * Q/TPA * (Hsz + 1) * 4 bytes
        assert expected.get("kvp_all_to_all", (None, None, BATCH * (8 // tpa) * 11 * 4))[2] == \
            BATCH * (8 // tpa) * 11 * 4
    for rank, r in enumerate(results["base"]):
        for step in range(NEW_TOKENS - 1):
            records = [c for c in r.traffic if c.step == f"decode{step}"]
            got: dict[str, list] = {}
            for c in records:
                got.setdefault(c.phase, []).append((c.kind, c.group_size, c.n_bytes))
            assert set(got) == set(expected), (rank, step)
            for phase, (kind, group, n_bytes, calls) in expected.items():
                assert got[phase] == [(kind, group, n_bytes)] * calls, (rank, step, phase)


@pytest.mark.slow
def test_hopb_splits_the_all_to_all_per_request_with_the_same_total_bytes(helix):
    kvp, tpa, results = helix
    expected = _expected(kvp, tpa)
    for r in results["hopb"]:
        records = [c for c in r.traffic if c.step == "decode0"]
        a2a = [c for c in records if c.phase == "kvp_all_to_all"]
        if "kvp_all_to_all" not in expected:
            assert a2a == []
            continue
        _, group, n_bytes, calls = expected["kvp_all_to_all"]
        assert len(a2a) == BATCH * calls
        assert sum(c.n_bytes for c in a2a) == n_bytes * calls
        assert {c.group_size for c in a2a} == {group}
        others = [(c.phase, c.n_bytes) for c in records if c.phase != "kvp_all_to_all"]
        base = [(c.phase, c.n_bytes) for c in results["base"][0].traffic
                if c.step == "decode0" and c.phase != "kvp_all_to_all"]
        assert others == base


@pytest.mark.slow
def test_kv_memory_balance_round_robin_within_one_block(helix):
    kvp, tpa, results = helix
    total = PROMPT_TOKENS + NEW_TOKENS - 1  # the last generated token is not fed back
    for name, block in (("base", 16), ("round_robin_4", 4)):
        lengths = _kv_per_kvp_rank(results[name][0].kv_tokens, kvp, tpa)
        assert sum(lengths) == total, name
        assert max(lengths) - min(lengths) <= block, (name, lengths)


@pytest.mark.slow
def test_kv_grows_on_the_last_rank_only_under_last_rank(helix):
    kvp, tpa, results = helix
    lengths = _kv_per_kvp_rank(results["last_rank"][0].kv_tokens, kvp, tpa)
    want = list(CONTIGUOUS_PROMPT_16[kvp])
    want[-1] += NEW_TOKENS - 1
    assert lengths == want
