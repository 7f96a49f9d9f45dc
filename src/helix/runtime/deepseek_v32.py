"""Helix decoding of a DeepSeek-V3.2-architecture model: DeepSeek-V3 (MLA + MoE) with DSA sparse attention.

Everything but the attention is ``helix.runtime.deepseek`` (same sharding, same collectives). The
attention of every layer (helix.runtime.dsa):

| phase | what happens | collective |
|---|---|---|
| qkv_projection | MLA projections as for V3, plus the indexer's query, weights and key (replicated) | — |
| (KV append) | the token's [c \\| k_r \\| k_I] (d_c + d_r + D_I) on its owner KVP rank | — |
| index_scores | the indexer over this rank's S_loc tokens, its k + 1 best per (request, query) | — |
| dsa_topk_all_gather | the candidates: KVP B (k + 1) 4 bytes per layer (helix.specs.dsa) | all-gather over KVP |
| local_attention | absorbed MLA over the local tokens in the global top-k (none: LSE -inf, output 0) | — |
| kvp_all_to_all, o_projection, FFN / MoE | as DeepSeek-V3 | as DeepSeek-V3 |

``extras()`` adds {"dsa": {"rows", "tie_rows", "empty_rows"}} summed over layers and steps: query
rows selected for, rows whose k-th score was tied beyond the k (resolved by the whole row, see
helix.runtime.dsa), and rows where this rank holds visible tokens but none of the selected ones.

References: Hugging Face transformers 5.24 ``modeling_deepseek_v32.py``; paper §2.1 (KVP, LSE combine).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime import deepseek
from helix.runtime.deepseek import HelixDeepseek
from helix.runtime.deepseek_hf import TINY_DEEPSEEK_SHAPE, DeepseekArch, hf_arch_fields, random_tiny
from helix.runtime.dsa import (
    TIE_PHASE,
    IndexerConfig,
    check_indexer,
    index_projection,
    index_scores,
    select_topk,
    shard_indexer,
)
from helix.runtime.mla import project
from helix.specs.model import ModelSpec

DATA_DEPENDENT_PHASES = (TIE_PHASE,)  # only on ties at the k-th score: not part of the step's formula


@dataclass(frozen=True, slots=True)
class DeepseekV32Arch(DeepseekArch):
    indexer: IndexerConfig

    def __post_init__(self) -> None:
        check_indexer(self.indexer, self.mla)


def arch_from_hf_config(cfg) -> DeepseekV32Arch:
    """DeepseekV32Arch from a transformers ``DeepseekV32Config``; RoPE and softmax scale via HF's own code."""
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as hf

    n_dense = cfg.mlp_layer_types.count("dense")
    if list(cfg.mlp_layer_types) != ["dense"] * n_dense + ["sparse"] * (cfg.num_hidden_layers - n_dense):
        raise HelixInputError("model.mlp_layer_types", "must be dense layers first, then sparse (MoE) ones")
    # V3.2's MLA always rotates interleaved pairs (its indexer: half-split)
    fields = hf_arch_fields(cfg, hf.DeepseekV32RotaryEmbedding, hf.yarn_apply_mscale, True, n_dense)
    return DeepseekV32Arch(**fields, indexer=IndexerConfig(cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk))


def model_spec(arch: DeepseekV32Arch, name: str) -> ModelSpec:
    """The simulator's view, indexer included (its step then holds the top-k exchange)."""
    ix = arch.indexer
    return dataclasses.replace(deepseek.model_spec(arch, name), index_heads=ix.num_heads, index_head_dim=ix.head_dim,
                               index_topk=ix.topk)


def check_layout(layout: Layout, arch: DeepseekV32Arch, name: str = "deepseek-v32") -> None:
    deepseek.check_layout(layout, arch, name)


# ---------------------------------------------------------------- the decoder


class HelixDeepseekV32(HelixDeepseek):
    family = "deepseek_v32"

    def __init__(self, arch: DeepseekV32Arch, state_dict: dict[str, torch.Tensor], comm, name: str = "deepseek-v32"):
        super().__init__(arch, state_dict, comm, name)
        dev = comm.device
        self.indexers = [shard_indexer(lambda key: state_dict[key].to(device=dev, dtype=torch.float32),
                                       f"model.layers.{i}.self_attn.indexer.") for i in range(arch.num_layers)]
        self.dsa_stats = {"rows": 0, "tie_rows": 0, "empty_rows": 0}

    def prefill(self, prompt_ids, options):
        self.dsa_stats = dict.fromkeys(self.dsa_stats, 0)
        return super().prefill(prompt_ids, options)

    def extras(self) -> dict:
        return {**super().extras(), "dsa": dict(self.dsa_stats)}

    def _cache_width(self) -> int:
        m = self.arch.mla
        return m.d_latent + m.d_rope + self.arch.indexer.head_dim  # [c | k_r | k_I]

    def _attention(self, i: int, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Layer i's DSA: indexer, global top-k, sparse MLA over the selected local tokens -> o [B, T, H]."""
        w, c, m, ix = self.layers[i], self.comm, self.arch.mla, self.arch.indexer
        d_c, d_cr = m.d_latent, m.d_latent + m.d_rope
        with c.phase("qkv_projection"):
            q_c, q_r, lat, k_r = project(x, positions, w.attn, m)  # [B, T, Q, d_c], [B, T, Q, d_r], ...
            q_i, weights, k_i = index_projection(x, positions, w.attn, self.indexers[i], ix, m)
            self.cache.write(i, torch.cat([lat, k_r, k_i], dim=-1).unsqueeze(2))  # [B, T, 1, d_c + d_r + D_I]
        cached, _, kv_positions = self.cache.view(i)  # [B, 1, S_loc, d_c + d_r + D_I], [S_loc]
        with c.phase("index_scores"):
            scores = index_scores(q_i, weights, cached[:, 0, :, d_cr:], positions, kv_positions, ix)  # [B, T, S_loc]
        keep, stats = select_topk(c, scores, positions, kv_positions, ix.topk, self.cache)  # [B, T, S_loc]
        for key, n in stats.items():
            self.dsa_stats[key] += n
        return self._attend(i, q_c, q_r, cached[:, 0, :, :d_c], cached[:, 0, :, d_c:d_cr], positions, kv_positions,
                            keep)  # sparse: the selected tokens only


DECODER = HelixDeepseekV32


# ---------------------------------------------------------------- the registry's tiny model


def tiny_deepseek_v32_config(**overrides):
    """tiny-deepseek's shape (1 dense + 2 MoE layers here) with a 4-head indexer (D_I = 16) keeping the top 8."""
    from transformers import DeepseekV32Config

    config = dict(TINY_DEEPSEEK_SHAPE, num_hidden_layers=3, index_n_heads=4, index_head_dim=16, index_topk=8)
    return DeepseekV32Config(**{**config, **overrides})


def tiny_deepseek_v32(seed: int = 0):
    """A random-initialised ``DeepseekV32ForCausalLM`` (fp32, eval): norms, the routing bias and the
    indexer's key norm perturbed so that they matter."""
    from transformers import DeepseekV32ForCausalLM

    return random_tiny(DeepseekV32ForCausalLM, tiny_deepseek_v32_config(), seed)
