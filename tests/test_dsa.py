"""DeepSeek-V3.2's DSA in the simulator: the preset and HF import, one layer's ops counted by hand, the
top-k exchange against the runtime's, memory with the index keys, and the breakdown's terms."""

from pathlib import Path

import numpy as np
import pytest

from helix import HelixInputError, Layout, load_hardware, load_model, simulate
from helix.cost import kernels, memory
from helix.cost.inventory import layer_ops
from helix.cost.messages import step_messages, topk_candidates, topk_exchange_bytes
from helix.cost.op_types import Shape
from helix.specs.model import ModelSpec
from helix.specs.precision import PrecisionSpec

CONFIG = Path(__file__).parent / "data" / "deepseek-v3.2-exp.config.json"
P = PrecisionSpec()  # FP4 weights and KV (0.5 B), BF16 communication


def _shape(model, kvp=64, batch=16, context=10**6, tpa=1, strategy="helix", q=1):
    a = np.asarray
    return Shape(model, P, strategy, a(tpa), a(kvp), a(1), a(8), a(8), a(1), a(batch), a(context), q)


def _ops(shape):
    return {op.name: op for op in layer_ops(shape)["attention"]}


def test_preset_and_hf_import():
    m = load_model("deepseek-v3.2")
    assert m.is_dsa and (m.index_heads, m.index_head_dim, m.index_topk) == (64, 128, 2048)
    hf = load_model(CONFIG)  # model_type deepseek_v32, the public DeepSeek-V3.2-Exp fields
    checkpoint = ("attention_weights_format", "ffn_weights_format", "max_context")  # the config's, not the preset's
    for field in m.__slots__:
        if field not in ("name", "source", *checkpoint):
            assert getattr(hf, field) == getattr(m, field), field
    assert (hf.ffn_weights_format, hf.max_context) == ("fp8_block", 163_840)  # quantization_config, 160K positions
    r1 = load_model("deepseek-r1")
    assert not r1.is_dsa and r1.index_key_bytes_per_token == 0.0
    # the indexer's weights: wq_b 1536 x 64 x 128, wk 7168 x 128, weights_proj 7168 x 64
    assert m.indexer_params == 12_582_912 + 917_504 + 458_752 == 13_959_168
    assert m.attention_params - r1.attention_params == 13_959_168
    # 61 layers x (576 latent x 2 B + 128 FP8 + one fp32 scale)
    assert m.kv_cache_bytes_per_token(2.0) == 61 * (1152 + 132) == 78_324


def test_indexer_fields_validated():
    base = load_model("deepseek-r1")
    fields = {f: getattr(base, f) for f in base.__slots__}
    with pytest.raises(HelixInputError, match="index_head_dim"):
        ModelSpec(**{**fields, "index_topk": 2048, "index_heads": 64})
    with pytest.raises(HelixInputError, match="index_head_dim: must be >= qk_rope_head_dim"):
        ModelSpec(**{**fields, "index_topk": 2048, "index_heads": 64, "index_head_dim": 32})
    llama = load_model("llama-3.1-405b")
    with pytest.raises(HelixInputError, match="DSA needs MLA"):
        ModelSpec(**{**{f: getattr(llama, f) for f in llama.__slots__}, "index_topk": 8, "index_heads": 2,
                     "index_head_dim": 16})


def test_one_layer_of_dsa_counted_by_hand():
    """Helix KVP 64, B = 16, S = 10^6: S_loc = 15,625, the selection 2048 / 64 = 32 tokens per rank."""
    m = load_model("deepseek-v3.2")
    ops = _ops(_shape(m))
    assert kernels.index_key_bytes_per_token(128) == 132
    score = ops["index_scores"]
    keys = 16 * 15_625 * 132  # every local index key once per request
    assert score.read_bytes == keys == 33_000_000
    assert score.bytes == keys + 16 * 64 * (128 + 4) + 16 * 15_625 * 4 == 34_135_168  # q + weights in, fp32 out
    assert score.flops == 16 * 64 * 15_625 * (2 * 128 + 2) == 4_128_000_000
    q_gemm = ops["index_q_gemm"]
    assert q_gemm.flops == 2 * 16 * 64 * 128 * 1536
    assert q_gemm.bytes == 64 * 128 * 1536 * 0.5 + 2 * (16 * 1536 + 16 * 8192)
    assert ops["index_weights_gemm"].flops == 2 * 16 * 64 * 7168
    assert ops["index_k_gemm"].flops == 2 * 16 * 128 * 7168
    assert ops["index_k_cache_write"].bytes == 1 * 128 * 2 + 132  # ceil(16/64) = 1 new token on this rank
    assert ops["index_topk_local"].bytes == 16 * (15_625 * 4 + 2049 * 8)
    assert ops["index_topk_merge"].bytes == 16 * (64 * 2049 * 4 + 32 * 4)
    sparse = ops["sparse_mla"]
    assert (sparse.term, sparse.table) == ("sparse_attention", "mla")
    assert sparse.bytes == 16 * 32 * 576 * 0.5 == 147_456
    assert sparse.flops == 16 * 128 * 32 * (2 * 576 + 2 * 512) == 142_606_336
    assert "attention" not in ops
    # DeepSeek-R1's dense MLA reads all 15,625 tokens: DSA reads 32
    dense = _ops(_shape(load_model("deepseek-r1")))["attention"]
    assert dense.bytes == 16 * 15_625 * 576 * 0.5


def test_selected_tokens_per_rank():
    m = load_model("deepseek-v3.2")
    sel = lambda kvp, S: float(_shape(m, kvp=kvp, context=S).selected_tokens_per_rank)  # noqa: E731
    assert sel(1, 10**6) == 2048 and sel(64, 10**6) == 32 and sel(3, 10**6) == 683  # ceil(2048 / 3)
    assert sel(1, 1000) == 1000 and sel(3, 10) == 4  # S <= k: every visible token, S_loc on the fullest rank
    assert sel(64, 100_000) == 32 and sel(4096, 10**6) == 1  # ceil(2048 / 4096) = 1 <= S_loc = 245


def test_round_robin_blocks_spread_the_selection_evenly():
    """The argument behind ceil(k / KVP): 16-token blocks round robin over KVP (the runtime's placement)."""
    torch = pytest.importorskip("torch")
    from helix.runtime.kv_cache import kv_owner

    S, k, kvp = 1_000_000, 2048, 64
    recent = torch.arange(S - k, S)  # a contiguous selection (the recent window)
    assert set(torch.bincount(kv_owner(recent, S, kvp), minlength=kvp).tolist()) == {32}
    gen = torch.Generator().manual_seed(0)
    load = sum(torch.bincount(kv_owner(torch.randperm(S, generator=gen)[:k], S, kvp), minlength=kvp)
               for _ in range(16))  # 16 requests, scattered selections
    assert int(load.sum()) == 16 * k and int(load.max()) <= 1.15 * 16 * k / kvp  # the hottest rank: within 15 %


def test_topk_exchange_is_one_message_whatever_s():
    m = load_model("deepseek-v3.2")
    msgs = {x.phase: x for x in step_messages(m, P, "helix", 1, 64, 1, 8, 8, 1, 16)}
    topk = msgs["dsa_topk_all_gather"]
    assert (topk.kind, int(topk.group_size), int(topk.calls_per_step)) == ("all_gather", 64, 61)
    assert topk.n_bytes == 64 * 16 * 2049 * 4 == 8_392_704  # KVP B (k + 1) fp32, whatever S is
    assert "dsa_topk_all_gather" not in {x.phase for x in step_messages(load_model("deepseek-r1"), P, "helix",
                                                                        1, 64, 1, 8, 8, 1, 16)}
    from helix.specs import dsa  # what the runtime reads: the simulator's format, not a copy

    assert dsa.topk_candidates is topk_candidates and dsa.TOPK_PHASE == "dsa_topk_all_gather"


def test_the_runtime_sends_the_simulators_topk_bytes():
    torch = pytest.importorskip("torch")
    from helix.runtime.dsa import select_topk

    class Recorder:  # KVP = 4 ranks holding the same scores; counts the gathered output, as helix.runtime.comm
        sent: list = []

        def all_gather(self, t, group, phase):
            out = torch.stack([t] * 4)
            self.sent.append((phase, out.numel() * out.element_size()))
            return out

    B, T, S_loc, k = 3, 2, 50, 8
    scores = torch.randn(B, T, S_loc, generator=torch.Generator().manual_seed(1))
    select_topk(Recorder(), scores, torch.arange(T) + S_loc, torch.arange(S_loc), k, cache=None)
    assert Recorder.sent == [("dsa_topk_all_gather", topk_exchange_bytes(B, 4, k, T))] == [
        ("dsa_topk_all_gather", 4 * 3 * 2 * 9 * 4)]


def test_memory_counts_the_index_keys():
    m, r1 = load_model("deepseek-v3.2"), load_model("deepseek-r1")
    kv = memory.kv_bytes_per_gpu(m, P, 1, 64, 1, 1, np.asarray(16), np.asarray(10**6))
    assert kv == 16 * 61 * 15_625 * (576 * 0.5 + 132) == 6_405_000_000
    assert kv - memory.kv_bytes_per_gpu(r1, P, 1, 64, 1, 1, np.asarray(16), np.asarray(10**6)) == 16 * 61 * 15_625 * 132
    hw = load_hardware("gb200-nvl72")
    layout = Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    r = simulate(m, hw, layout, 16, 10**6)
    assert float(r.kv_bytes_per_gpu) == 6_405_000_000


def test_breakdown_shows_the_dsa_terms_and_leaves_dense_models_alone():
    hw = load_hardware("gb200-nvl72")
    layout = Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    d = simulate(load_model("deepseek-v3.2"), hw, layout, 16, 10**6).to_dict()
    for term in ("indexer", "index_topk", "sparse_attention", "dsa_topk_all_gather"):
        assert d["breakdown"][term] > 0, term
    assert "attention" not in d["breakdown"] and d["hbm_read_bytes_per_gpu"]["indexer"] > 0
    dense = simulate(load_model("deepseek-r1"), hw, layout, 16, 10**6).to_dict()
    assert not {"indexer", "index_topk", "sparse_attention", "dsa_topk_all_gather"} & set(dense["breakdown"])
    # the all-gather's time is the collective form's on its bytes; the KV read no longer grows with S
    long = simulate(load_model("deepseek-v3.2"), hw, layout, 16, 4 * 10**6).to_dict()
    assert long["breakdown"]["sparse_attention"] == pytest.approx(d["breakdown"]["sparse_attention"], rel=0.05)
    assert long["breakdown"]["indexer"] > d["breakdown"]["indexer"]
    grown = long["hbm_read_bytes_per_gpu"]["indexer"] - d["hbm_read_bytes_per_gpu"]["indexer"]
    assert grown == pytest.approx(61 * 16 * (62_500 - 15_625) * 132)  # the index keys' read grows with S
    assert long["breakdown"]["dsa_topk_all_gather"] == d["breakdown"]["dsa_topk_all_gather"]


def test_simulate_command_shows_the_dsa_terms(capsys):
    import json

    from helix.cli import main

    args = ["simulate", "--model", "deepseek-v3.2", "--context", "1M", "--strategy", "helix", "--kvp", "64", "--tpa",
            "1", "--tpf", "8", "--ep", "8", "--batch", "16"]
    assert main(args) == 0
    text = capsys.readouterr().out
    for term in ("indexer", "index_topk", "sparse_attention", "dsa_topk_all_gather (exposed comm)"):
        assert f"\n{term} " in text, term
    assert main(args + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"indexer", "index_topk", "sparse_attention", "dsa_topk_all_gather"} <= set(d["breakdown"])
    assert d["communication"]["dsa_topk_all_gather"]["total_s"] > 0


def test_experiment_section(tmp_path):
    """The report's DSA section (reduced grid): every context and batch has a row; the sparse MLA's read is
    bounded by k whatever S is, while the indexer's read grows."""
    from helix.experiments import EXPERIMENTS, dsa
    from helix.experiments.common import Context

    assert dsa in EXPERIMENTS
    section = dsa.run(Context(out=tmp_path, quick=True))
    assert section.key == "dsa" and (tmp_path / "dsa_context.png").stat().st_size > 5_000
    rows = (tmp_path / "dsa_context.csv").read_text().splitlines()
    assert len(rows) == 1 + len(dsa.CONTEXTS) * len(dsa.BATCHES)
    helix, _, points = dsa.compare(Context(out=tmp_path, quick=True), dsa.DSA_MODEL)
    assert points == section.points_evaluated[dsa.DSA_MODEL]
    ours = [helix[int(c), 1]["helix"] for c in dsa.CONTEXTS if helix[int(c), 1]["helix"]]
    reads = [h[2] for h in ours]
    # the sparse MLA reads at most k = 2048 latent rows per request and layer, whatever S is
    assert len(ours) >= 3 and all(r["attention"] <= 61 * 2048 * 576 * 0.5 for r in reads)
    assert [r["indexer"] for r in reads] == sorted(r["indexer"] for r in reads)
