"""Helix decoding of a DeepSeek-V3/R1-architecture model: MLA attention and an MoE / dense FFN.

Built on every rank from the full Hugging Face ``DeepseekV3ForCausalLM`` state dict. Two layouts:

Helix, ``Layout.helix(kvp=N, tpa=1, tpf=TPF, ep=EP)`` [paper §2, §3.1]; attention rank = kvp_rank,
FFN rank r = ep_rank * TPF + tpf_rank (helix.layout):

| weights | sharding |
|---|---|
| MLA down/up projections, W_UK, W_UV, norms | replicated (TPA = 1: one latent KV head) |
| W_O | input columns of heads kvp_rank * Q/N + [0, Q/N) (what the all-to-all leaves here) |
| dense FFN (first ``first_k_dense_replace`` layers) | F split over all N (tensor_split, part r) |
| routed experts | E/EP experts on EP rank, each split by TPF along Fe (helix.runtime.moe) |
| shared expert | its F split over all N, part r (rides the MoE reductions) |
| embedding, LM head | vocabulary-parallel over N |

One layer: qkv_projection -> local_attention (+ W_UV) -> kvp_all_to_all -> combine_partial_attention
-> o_projection -> o_projection_all_reduce (over N) -> ffn + ffn_all_reduce (dense layers) or
moe_tp_all_reduce + moe_ep_all_gather (MoE layers). Per step: embedding_all_reduce, lm_head_all_gather.

DP+EP baseline, ``Layout.dp_ep(N)``: rank d owns requests [d B_loc, (d+1) B_loc) with B_loc =
ceil(B/N), whole attention (its own latent cache, no KVP), replicated dense layers, embedding and
LM head; MoE experts by EP with the dispatch/combine all-to-all. The tokens every rank returns are
gathered outside the step (unrecorded): a real deployment returns them to each rank's own users.

The cache stores [c | k_r] (d_c + d_r per token, one latent head) in helix.runtime.kv_cache with the
staged-concatenation ownership rules, with ``value_dim=0`` (no value).

Expert load: ``expert_loads[step]`` is [MoE layers, E] int64 tokens per expert for that step (prefill:
B T k per layer; decode: B k per layer under Helix, this rank's B_loc k under DP+EP). ``extras()``
returns the whole batch's (summed over the DP ranks) for ``launch.RunResult.extras["expert_loads"]``;
``helix.runtime.moe.expert_load_lines`` formats it for ``helix run``.

Launch it like any family: ``launch.Job(model, Layout.helix(kvp=N, ep=EP), ...)`` (TPF = N / EP) or
``Job(model, Layout.dp_ep(N), ...)``.

References: paper §2.1-2.2, §3.1; Hugging Face transformers 5.24 ``modeling_deepseek_v3.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helix.errors import HelixInputError
from helix.layout import Layout, check_layout_for_model
from helix.runtime.attention import helix_attention
from helix.runtime.decoder import (
    DecodeOptions,
    HelixDecoder,
    StepOutput,
    rms_norm,
    vocab_parallel_argmax,
    vocab_parallel_embedding,
    vocab_range,
)

# the architecture and its simulator view, this family's interface beside check_layout and DECODER (registry)
from helix.runtime.deepseek_hf import DeepseekArch, arch_from_hf_config, model_spec  # noqa: F401
from helix.runtime.kv_cache import KVCache
from helix.runtime.mla import check_mla_layout, mla_attend, o_projection, project, shard_mla
from helix.runtime.moe import MoEShard, dp_ep_moe, helix_moe, shard_moe, swiglu

# ---------------------------------------------------------------- the layouts it runs


def check_layout(layout: Layout, arch: DeepseekArch, name: str = "deepseek") -> None:
    """Helix with TPA = 1 or DP+EP; E/EP, Fe/TPF and the shared/dense F over N must divide.

    The simulator's model checks come first (``check_layout_for_model``: its messages are the ones a
    user of ``helix simulate`` sees for the same layout), then what only the runtime needs.
    """
    if layout.strategy not in ("helix", "dp_ep"):
        raise HelixInputError("strategy", f"must be helix or dp_ep for MLA + MoE, got {layout.strategy!r}")
    # the runtime shards remainders (the first ranks take one row more), so uneven widths are allowed
    check_layout_for_model(layout, model_spec(arch, name), allow_uneven=True)
    if layout.strategy == "helix":
        check_mla_layout(layout.tpa, layout.kvp, arch.mla.num_heads)
    if layout.dp > 1 and layout.strategy == "helix":
        raise HelixInputError("dp", "Helix with DP > 1 is not supported by the runtime")
    if arch.expert_ffn_dim % layout.tpf:
        raise HelixInputError("tpf", f"must divide the expert FFN dim ({arch.expert_ffn_dim}), got {layout.tpf}")
    shared = arch.expert_ffn_dim * arch.num_shared_experts
    n = layout.gpus_per_stage if layout.strategy == "helix" else 1
    if shared % n:
        raise HelixInputError("layout", f"the shared expert's FFN dim ({shared}) must divide over N (={n})")


# ---------------------------------------------------------------- the decoder


@dataclass(frozen=True, slots=True)
class _LayerShard:
    input_norm: torch.Tensor  # [H], replicated
    attn: object  # helix.runtime.mla.MLAShard
    post_norm: torch.Tensor  # [H]
    moe: MoEShard | None  # MoE layers
    dense: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # gate [F/N, H], up [F/N, H], down [H, F/N]


class HelixDeepseek(HelixDecoder):
    family = "deepseek"

    def __init__(self, arch: DeepseekArch, state_dict: dict[str, torch.Tensor], comm, name: str = "deepseek"):
        layout = comm.layout
        check_layout(layout, arch, name)
        self.arch, self.comm, self.name = arch, comm, name
        self.dp_ep = layout.strategy == "dp_ep"
        N, dev = layout.gpus_per_stage, comm.device
        _, self.dp_rank, kvp_rank, _ = layout.attention_coords(comm.rank)
        _, _, ep_rank, tpf_rank = layout.ffn_coords(comm.rank)
        r = comm.stage_rank
        split = 1 if self.dp_ep else N  # ranks sharing W_O, the dense FFN, the shared expert, the vocabulary
        part = 0 if self.dp_ep else r
        f0, f1 = vocab_range(arch.ffn_dim, split, part)

        def w(key: str) -> torch.Tensor:
            return state_dict[key].to(device=dev, dtype=torch.float32)

        self.layers = []
        for i in range(arch.num_layers):
            p = f"model.layers.{i}."
            moe = dense = None
            if i >= arch.num_dense_layers:
                moe = shard_moe(w, p + "mlp.", arch.router, layout.tpf, layout.ep, tpf_rank, ep_rank, split, part)
            else:
                dense = (w(p + "mlp.gate_proj.weight")[f0:f1].contiguous(),
                         w(p + "mlp.up_proj.weight")[f0:f1].contiguous(),
                         w(p + "mlp.down_proj.weight")[:, f0:f1].contiguous())
            self.layers.append(_LayerShard(
                input_norm=w(p + "input_layernorm.weight"),
                attn=shard_mla(w, p + "self_attn.", arch.mla, 0 if self.dp_ep else kvp_rank, split),
                post_norm=w(p + "post_attention_layernorm.weight"), moe=moe, dense=dense))
        self.vocab_start, v_stop = vocab_range(arch.vocab_size, split, part)
        self.embed = w("model.embed_tokens.weight")[self.vocab_start:v_stop].contiguous()  # [V/N, H]
        self.lm_head = w("lm_head.weight")[self.vocab_start:v_stop].contiguous()  # [V/N, H]
        self.final_norm = w("model.norm.weight")
        self.cache: KVCache | None = None
        self.options = DecodeOptions()
        self.rows = slice(0, 0)  # the requests this rank decodes (all of them under Helix)
        self.batch_size = 0
        self.next_position = 0
        self.steps = 0
        self.hidden: list[torch.Tensor] = []
        self.expert_loads: dict[str, torch.Tensor] = {}  # step -> [MoE layers, E]

    # ---- interface
    def prefill(self, prompt_ids: torch.Tensor, options: DecodeOptions) -> StepOutput:
        ids = prompt_ids.to(self.comm.device)  # [B, T], replicated
        B, T = ids.shape
        a, c = self.arch, self.comm
        self.batch_size, self.options, self.steps, self.hidden, self.expert_loads = B, options, 0, [], {}
        if self.dp_ep:
            B_loc = -(-B // c.layout.dp)
            self.rows = slice(min(B, self.dp_rank * B_loc), min(B, (self.dp_rank + 1) * B_loc))
        else:
            self.rows = slice(0, B)
        n_rows = self.rows.stop - self.rows.start
        self.cache = KVCache(a.num_layers, n_rows, 1, self._cache_width(), 0 if self.dp_ep else c.kvp_rank,
                             1 if self.dp_ep else c.layout.kvp, T, options.block_tokens, options.ownership,
                             device=c.device, value_dim=0)  # one latent head [c | k_r], no value
        c.traffic.step = "prefill"
        chunk = options.prefill_chunk_tokens or T
        for t0 in range(0, T, chunk):
            h = self._forward(ids[self.rows, t0:t0 + chunk],
                              torch.arange(t0, min(t0 + chunk, T), device=c.device), options.capture_hidden)
        self.next_position = T
        return self._head(h[:, -1])

    def decode_step(self, token_ids: torch.Tensor) -> StepOutput:
        if self.cache is None:
            raise RuntimeError("decode_step before prefill")
        self.comm.traffic.step = f"decode{self.steps}"
        positions = torch.tensor([self.next_position], device=self.comm.device)  # global position, [1]
        h = self._forward(token_ids.to(self.comm.device)[self.rows].view(-1, 1), positions)
        self.next_position += 1
        self.steps += 1
        return self._head(h[:, -1])

    def kv_tokens(self) -> int:
        return 0 if self.cache is None else self.cache.length

    def extras(self) -> dict:
        """{"expert_loads": {step: [MoE layers, E] int64 on CPU}}, the whole batch's (every rank, same value).

        Under DP+EP each rank routed its own requests: the loads are summed over the DP ranks
        (bookkeeping outside the step, unrecorded). Under Helix routing is replicated already.
        """
        loads = {}
        for step, load in self.expert_loads.items():
            if self.dp_ep:
                load = self.comm.all_reduce(load.clone(), "stage", "expert_load", record=False)
            loads[step] = load.cpu()
        return {"expert_loads": loads}

    # ---- the model
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, capture: bool = False) -> torch.Tensor:
        """ids [B, T] at global positions [T] -> residual stream [B, T, H] after the last layer."""
        if self.dp_ep:
            h = self.embed[ids]  # [B_loc, T, H], this rank's requests
        else:
            h = vocab_parallel_embedding(self.comm, ids, self.embed, self.vocab_start)  # [B, T, H], replicated
        self.cache.reserve(positions)
        loads = []
        for i in range(self.arch.num_layers):
            h, load = self._layer(i, h, positions)
            if load is not None:
                loads.append(load)
            if capture:
                self.hidden.append(h.clone())
        step = self.comm.traffic.step
        if loads:
            new = torch.stack(loads)  # [MoE layers, E]
            self.expert_loads[step] = self.expert_loads[step] + new if step in self.expert_loads else new
        return h

    def _cache_width(self) -> int:
        """Values cached per token: one latent head [c | k_r] (subclasses append their own, e.g. DSA's index key)."""
        return self.arch.mla.d_latent + self.arch.mla.d_rope

    def _attention(self, i: int, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Layer i's MLA on normed x [B, T, H] at global positions [T] -> o [B, T, H], replicated."""
        w, c, m = self.layers[i], self.comm, self.arch.mla
        d_c = m.d_latent
        with c.phase("qkv_projection"):
            q_c, q_r, lat, k_r = project(x, positions, w.attn, m)  # [B, T, Q, d_c], [B, T, Q, d_r], ...
            entry = torch.cat([lat, k_r], dim=-1).unsqueeze(2)  # [B, T, 1, d_c + d_r]: one latent head
            self.cache.write(i, entry)  # only the tokens this KVP rank owns are kept
        cached, _, kv_positions = self.cache.view(i)  # [B, 1, S_loc, d_c + d_r], [S_loc]
        return self._attend(i, q_c, q_r, cached[:, 0, :, :d_c], cached[:, 0, :, d_c:], positions, kv_positions)

    def _attend(self, i: int, q_c, q_r, latent, k_r, positions, kv_positions, keep=None) -> torch.Tensor:
        """Absorbed MLA over this rank's cached tokens (``keep`` [B, T, S_loc]: only those, DSA), the KVP
        all-to-all and exact combine, then W_O and its all-reduce -> o [B, T, H], replicated (V3 and V3.2)."""
        w, c = self.layers[i], self.comm
        attend = mla_attend(q_c, q_r, latent, k_r, positions, kv_positions, w.attn, self.arch.mla,
                            keep)  # latent attention + W_UV, by requests
        attn = helix_attention(c, attend, q_c.shape[0], self.options.hopb_chunks)  # [B, T, Q/N, v], exact
        with c.phase("o_projection"):
            o = o_projection(attn, w.attn)  # [B, T, H], partial sum over N
        return c.all_reduce(o, "attention", "o_projection_all_reduce")  # [B, T, H], replicated

    def _layer(self, i: int, h: torch.Tensor, positions: torch.Tensor):
        w, c, a = self.layers[i], self.comm, self.arch
        B, T, H = h.shape
        with c.phase("qkv_projection"):
            x = rms_norm(h, w.input_norm, a.rms_norm_eps)  # [B, T, H], replicated
        h = h + self._attention(i, x, positions)
        x = rms_norm(h, w.post_norm, a.rms_norm_eps)  # [B, T, H], replicated (Helix) / own requests (DP+EP)
        if w.dense is not None:
            with c.phase("ffn"):
                f = swiglu(x, *w.dense)  # [B, T, H], partial over N (Helix) / whole (DP+EP)
            if not self.dp_ep:
                c.all_reduce(f, "stage", "ffn_all_reduce")
            return h + f, None
        moe = dp_ep_moe if self.dp_ep else helix_moe
        f, load = moe(c, x.reshape(B * T, H), w.moe)  # [B T, H], exact
        return h + f.view(B, T, H), load

    def _head(self, h_last: torch.Tensor) -> StepOutput:
        x = rms_norm(h_last, self.final_norm, self.arch.rms_norm_eps)  # [B, H]
        if not self.dp_ep:
            return vocab_parallel_argmax(self.comm, x, self.lm_head, self.vocab_start, self.arch.vocab_size,
                                         self.options.return_logits)
        logits = F.linear(x, self.lm_head)  # [B_loc, V], this rank's requests: no collective
        tokens = self._gather_rows(logits.argmax(dim=-1, keepdim=True).float())[:, 0].long()
        full = self._gather_rows(logits) if self.options.return_logits else None
        return StepOutput(tokens, full)

    def _gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """DP+EP output collection: every rank's rows [B_loc, D] -> [B, D] (unrecorded: not a step collective)."""
        B_loc = -(-self.batch_size // self.comm.layout.dp)
        padded = F.pad(t, (0, 0, 0, B_loc - t.shape[0]))
        return self.comm.all_gather(padded, "stage", "debug_gather", record=False).reshape(-1, t.shape[1])[
            :self.batch_size]


DECODER = HelixDeepseek
