"""DeepSeek-V3 routing and the TPF x EP expert shards against Hugging Face's DeepseekV3MoE (one process)."""

from __future__ import annotations

import pytest
import torch

from helix.errors import HelixInputError
from helix.runtime.deepseek import arch_from_hf_config
from helix.runtime.deepseek_hf import tiny_deepseek
from helix.runtime.moe import check_moe_split, expert_load, local_experts_partial, route, shard_moe, shared_partial

TOKENS = 64
SPLITS = [(1, 1), (2, 1), (1, 2), (4, 2), (2, 4), (8, 1), (1, 8)]  # (TPF, EP)


@pytest.fixture(scope="module")
def model():
    return tiny_deepseek()


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(TOKENS, 64, generator=torch.Generator().manual_seed(seed))


def _shard(model, layer, tpf, ep, tpf_rank, ep_rank):
    sd = model.state_dict()
    router = arch_from_hf_config(model.config).router
    return shard_moe(lambda k: sd[k].float(), f"model.layers.{layer}.mlp.", router, tpf, ep, tpf_rank, ep_rank,
                     tpf * ep, ep_rank * tpf + tpf_rank)


def test_routing_equals_hf_router_with_bias_and_group_limit(model):
    gate = model.model.layers[1].mlp.gate
    assert float(gate.e_score_correction_bias.abs().max()) > 0.01  # the bias is live
    x = _x()
    with torch.no_grad():
        _, hf_w, hf_idx = gate(x)
    s = _shard(model, 1, 1, 1, 0, 0)
    w, idx = route(x, s.router_weight, s.router_bias, s.router)
    torch.testing.assert_close(idx, hf_idx, rtol=0, atol=0)
    torch.testing.assert_close(w, hf_w, rtol=0, atol=0)
    torch.testing.assert_close(w.sum(-1), torch.full((TOKENS,), 2.5), rtol=0, atol=1e-6)  # normalised x 2.5
    groups = [set((row // 4).tolist()) for row in idx]
    assert max(len(g) for g in groups) <= 2  # topk_group = 2 of n_group = 4
    load = expert_load(idx, 16)
    assert int(load.sum()) == TOKENS * 4


def test_bias_changes_the_choice_but_not_the_weights(model):
    s = _shard(model, 2, 1, 1, 0, 0)
    x = _x(1)
    w_b, idx_b = route(x, s.router_weight, s.router_bias, s.router)
    w_0, idx_0 = route(x, s.router_weight, torch.zeros_like(s.router_bias), s.router)
    assert not torch.equal(idx_b.sort(-1).values, idx_0.sort(-1).values)
    scores = torch.sigmoid(x @ s.router_weight.T).gather(1, idx_b)  # weights from unbiased scores
    torch.testing.assert_close(w_b, 2.5 * scores / scores.sum(-1, keepdim=True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tpf, ep", SPLITS)
def test_tpf_ep_partials_sum_to_hf_moe(model, tpf, ep):
    layer = 3
    x = _x(2)
    with torch.no_grad():
        ref = model.model.layers[layer].mlp(x[None])[0]
    total = torch.zeros_like(x)
    for ep_rank in range(ep):  # the sum of the TPF all-reduce and the EP all-gather + local sum
        for tpf_rank in range(tpf):
            s = _shard(model, layer, tpf, ep, tpf_rank, ep_rank)
            w, idx = route(x, s.router_weight, s.router_bias, s.router)
            total += local_experts_partial(x, w, idx, s) + shared_partial(x, s)
    torch.testing.assert_close(total, ref, rtol=0, atol=1e-5)


def test_expert_split_errors_name_the_field():
    with pytest.raises(HelixInputError, match=r"ep: must divide the routed expert count \(16\), got 3"):
        check_moe_split(16, 32, 32, 1, 3, 3)
    with pytest.raises(HelixInputError, match=r"tpf: must divide the expert FFN dim \(32\), got 3"):
        check_moe_split(16, 32, 32, 3, 1, 3)
