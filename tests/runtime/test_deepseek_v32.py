"""DeepSeek-V3.2 (DSA) under Helix against Hugging Face: tokens, logits, the top-k exchange's bytes, ties.

One spawn per layout runs both decode configurations (RUNS). The tie case zeroes one layer's indexer
query, so every score of that layer is 0 and every row with more than k visible tokens is a tie at
the k-th score, which Hugging Face's ``torch.topk`` breaks by its own rule over the whole row.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helix.cli import main
from helix.cost.messages import step_messages, topk_exchange_bytes
from helix.layout import Layout
from helix.runtime.comm import Comm
from helix.runtime.decoder import DecodeOptions
from helix.runtime.deepseek_v32 import model_spec
from helix.runtime.dsa import TIE_PHASE, select_topk
from helix.runtime.kv_cache import KVCache
from helix.runtime.launch import Job, RunSpec, prepare, run_job, run_spawned
from helix.runtime.mla import latent_attention
from helix.specs.dsa import TOPK_PHASE
from helix.specs.precision import PrecisionSpec
from helix.validation.traffic import tie_gather_bytes

B, T, NEW, K, LAYERS = 3, 29, 5, 8, 3  # tiny-deepseek-v32: index_topk 8, 3 layers (1 dense)
RUNS = {
    "rr4": RunSpec(NEW, DecodeOptions(block_tokens=4, return_logits=True)),
    "contiguous16": RunSpec(NEW, DecodeOptions(block_tokens=16, ownership="contiguous", hopb_chunks=2,
                                               return_logits=True)),
}
LAYOUTS = {
    "kvp2-tpf1-ep2": Layout.helix(kvp=2, tpf=1, ep=2),
    "kvp4-tpf2-ep2": Layout.helix(kvp=4, tpf=2, ep=2),
    "kvp8-tpf2-ep4": Layout.helix(kvp=8, tpf=2, ep=4),
}
TIED_LAYER = 1


def _job(prompt, layout: Layout, runs: tuple[RunSpec, ...] | None = None) -> Job:
    return Job("tiny-deepseek-v32", layout, prompt, tuple(RUNS.values()) if runs is None else runs)


def _generate(hf, prompt):
    with torch.no_grad():
        out = hf.generate(prompt, max_new_tokens=NEW, do_sample=False, output_logits=True,
                          return_dict_in_generate=True)
    return out.sequences[:, T:], torch.stack(out.logits, dim=1)  # [B, NEW], [B, NEW, V]


@pytest.fixture(scope="module")
def reference():
    prompt = torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(3))
    payload, hf = prepare(_job(prompt, Layout.helix(kvp=1)))
    tokens, logits = _generate(hf, prompt)
    key = f"model.layers.{TIED_LAYER}.self_attn.indexer.wq_b.weight"
    with torch.no_grad():
        hf.get_parameter(key).zero_()  # every index score of this layer is exactly 0: ties everywhere
    tied_tokens, tied_logits = _generate(hf, prompt)
    tied = dataclasses.replace(payload, state_dict={**payload.state_dict, key: torch.zeros_like(
        payload.state_dict[key])}, job=_job(prompt, Layout.helix(kvp=1), (RUNS["rr4"],)))
    return {"payload": payload, "prompt": prompt, "tokens": tokens, "logits": logits,
            "tied_payload": tied, "tied_tokens": tied_tokens, "tied_logits": tied_logits}


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=str)
def runs(request, reference):
    layout = LAYOUTS[request.param]
    payload = dataclasses.replace(reference["payload"], job=_job(reference["prompt"], layout))
    per_rank = run_spawned(payload, timeout_s=180)
    return layout, {name: [ranks[i] for ranks in per_rank] for i, name in enumerate(RUNS)}


def _assert_equal_hf(results, tokens, logits, what):
    for rank, r in enumerate(results):
        assert torch.equal(r.tokens, tokens), (what, rank)
    err = (torch.stack(results[0].logits, dim=1) - logits).abs()
    assert float(err.max()) < 1e-4, (what, float(err.max()))


def test_single_device_equals_hf(reference):
    results = run_job(0, 1, "", reference["payload"])
    for name, r in zip(RUNS, results, strict=True):
        _assert_equal_hf([r], reference["tokens"], reference["logits"], name)
        assert r.traffic == []  # KVP = 1: the top-k is local, nothing exchanged


def test_the_selection_matters(reference):
    """Dense attention (index_topk above the context) gives other logits: the test above checks DSA."""
    dense = prepare(_job(reference["prompt"], Layout.helix(kvp=1)))[1]
    dense.config.index_topk = 1024
    for layer in dense.model.layers:
        layer.self_attn.indexer.index_topk = 1024
    assert float((_generate(dense, reference["prompt"])[1] - reference["logits"]).abs().max()) > 1e-2


@pytest.mark.slow
def test_tokens_equal_hf_on_every_rank_and_logits_within_1e_4(runs, reference):
    layout, results = runs
    for name, ranks in results.items():
        _assert_equal_hf(ranks, reference["tokens"], reference["logits"], (layout.describe(), name))


@pytest.mark.slow
def test_ranks_holding_none_of_the_selected_tokens_contribute_nothing(runs):
    layout, results = runs
    for name, ranks in results.items():
        stats = [r.extras["dsa"] for r in ranks]
        assert {s["rows"] for s in stats} == {LAYERS * B * (T + NEW - 1)}
        # some rank holds visible tokens of a query but none of its top 8 (and the tokens still match)
        assert max(s["empty_rows"] for s in stats) > 0, (layout.describe(), name)
    # contiguous prompt, blocks of 16, then round-robin: positions 0..32 in blocks 0, 1, 2 (block 2 on
    # rank 2 % KVP); at KVP 4 and 8 most ranks hold nothing
    kv = results["contiguous16"][0].kv_tokens
    assert kv == ([17, 16] if layout.kvp == 2 else [16, 16, 1] + [0] * (layout.kvp - 3))


def test_topk_exchange_bytes_formula():
    # KVP x B x q x (k + 1) x 4: DeepSeek-V3.2 (k = 2048) at KVP = 8, B = 16: 8 * 16 * 2049 * 4
    assert topk_exchange_bytes(batch=16, kvp=8, index_topk=2048) == 1_049_088
    assert topk_exchange_bytes(batch=3, kvp=4, index_topk=8) == 4 * 3 * 9 * 4 == 432
    assert topk_exchange_bytes(batch=3, kvp=4, index_topk=8, query_tokens=T) == 432 * T
    assert tie_gather_bytes(rows=3, kvp=4, s_loc_max=8) == 384


@pytest.mark.slow
def test_decode_traffic_equals_the_formulas_byte_for_byte(runs):
    layout, results = runs
    from helix.runtime.deepseek_v32 import arch_from_hf_config, tiny_deepseek_v32_config

    arch = arch_from_hf_config(tiny_deepseek_v32_config())
    msgs = step_messages(model_spec(arch, "tiny-deepseek-v32"), PrecisionSpec.uniform("fp32"), layout.strategy,
                         layout.tpa, layout.kvp, layout.dp, layout.tpf, layout.ep, 1, B)
    expected = {m.phase: [(m.kind, int(m.group_size), int(m.n_bytes))] * int(m.calls_per_step)
                for m in msgs if int(m.group_size) > 1 and int(m.calls_per_step) > 0}
    assert expected[TOPK_PHASE] == [("all_gather", layout.kvp, layout.kvp * B * (K + 1) * 4)] * LAYERS
    for rank, r in enumerate(results["rr4"]):
        prefill = [c.n_bytes for c in r.traffic if c.step == "prefill" and c.phase == TOPK_PHASE]
        assert prefill == [layout.kvp * B * T * (K + 1) * 4] * LAYERS  # every prompt token is a query
        for step in range(NEW - 1):
            got: dict[str, list] = {}
            for c in r.traffic:
                if c.step == f"decode{step}" and c.phase != TIE_PHASE:
                    got.setdefault(c.phase, []).append((c.kind, c.group_size, c.n_bytes))
            assert got == expected, (rank, step)


# ---------------------------------------------------------------- ties at the k-th score


def _tie_stats_and_gathers(result):
    gathers = [c.n_bytes for c in result.traffic if c.step == "decode0" and c.phase == TIE_PHASE]
    return result.extras["dsa"]["tie_rows"], gathers


def test_ties_broken_as_hf_breaks_them_on_one_device(reference):
    (r,) = run_job(0, 1, "", reference["tied_payload"])
    _assert_equal_hf([r], reference["tied_tokens"], reference["tied_logits"], "tied, KVP 1")
    # layer 1 alone: prompt rows 8..28 (more than 8 visible) and every decode row are tied
    assert r.extras["dsa"]["tie_rows"] >= B * (T - K) + B * (NEW - 1)
    assert not torch.equal(reference["tied_tokens"], reference["tokens"])  # the tied layer changed the answer


@pytest.mark.slow
def test_ties_broken_as_hf_breaks_them_under_kvp4(reference):
    layout = Layout.helix(kvp=4, tpf=4, ep=1)
    payload = dataclasses.replace(reference["tied_payload"],
                                  job=_job(reference["prompt"], layout, (RUNS["rr4"],)))
    ranks = [per_run[0] for per_run in run_spawned(payload, timeout_s=180)]
    _assert_equal_hf(ranks, reference["tied_tokens"], reference["tied_logits"], "tied, KVP 4")
    for r in ranks:
        tie_rows, gathers = _tie_stats_and_gathers(r)
        assert tie_rows >= B * (T - K) + B * (NEW - 1)
        # decode 0: 30 cached tokens in blocks of 4 over 4 ranks (8, 8, 8, 6): B rows of max S_loc = 8
        assert tie_gather_bytes(B, 4, 8) in gathers
        assert all(n % (4 * 8 * 4) == 0 for n in gathers)


def test_select_topk_takes_hfs_choice_among_tied_scores_not_the_lowest_positions():
    """30 cached tokens, 5 above 0 and 25 at exactly 0: the 3 remaining places are HF's pick among the 25."""
    comm = Comm(Layout.helix(kvp=1), 0, torch.device("cpu"), {}, {"kvp": 1})
    cache = KVCache(1, 1, 1, 1, 0, 1, 30, block_tokens=4)
    scores = torch.zeros(1, 1, 30)
    scores[0, 0, [3, 11, 17, 22, 29]] = torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0])
    keep, stats = select_topk(comm, scores, torch.tensor([29]), torch.arange(30), K, cache)
    hf = torch.zeros(30, dtype=torch.bool)
    hf[scores[0, 0].topk(K).indices] = True  # what DeepseekV32Indexer does with the whole row
    assert torch.equal(keep[0, 0], hf) and stats["tie_rows"] == 1
    lowest = torch.zeros(30, dtype=torch.bool)
    lowest[[0, 1, 2, 3, 11, 17, 22, 29]] = True
    assert not torch.equal(hf, lowest)  # a "lowest position wins" rule would differ from HF here


def test_a_query_with_nothing_selected_on_this_shard_gives_minus_inf_and_zeros():
    g = torch.Generator().manual_seed(0)
    q_c, q_r = torch.randn(2, 1, 4, 6, generator=g), torch.randn(2, 1, 4, 2, generator=g)
    c, k_r = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 2, generator=g)
    keep = torch.zeros(2, 1, 5, dtype=torch.bool)
    keep[1, 0, 2] = True
    out, lse = latent_attention(q_c, q_r, c, k_r, torch.tensor([9]), torch.arange(5), 0.5, keep)
    assert torch.equal(lse[0], torch.full((1, 4), float("-inf"))) and torch.equal(out[0], torch.zeros(1, 4, 6))
    torch.testing.assert_close(out[1], c[1, 2].expand(1, 4, 6))  # one selected token: its value, weight 1
    assert not torch.isnan(out).any()


@pytest.mark.slow
def test_helix_run_reports_the_topk_exchange(capsys):
    argv = ["run", "--model", "tiny-deepseek-v32", "--kvp", "4", "--tpf", "2", "--ep", "2", "--batch", "3",
            "--prompt-len", "29", "--new-tokens", "4", "--block-tokens", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    row = next(r for r in summary["collectives"] if r["phase"] == TOPK_PHASE)
    assert (row["calls"], row["bytes"], row["simulator_bytes"]) == (LAYERS, LAYERS * 432, LAYERS * 432)
    assert "tokens match Hugging Face generate (single device): yes" in out
