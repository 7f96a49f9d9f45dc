"""Helix decoding of a Llama-architecture model (RMSNorm, RoPE with Llama-3 scaling, GQA, SwiGLU).

Built on every rank from the full Hugging Face ``LlamaForCausalLM`` state dict; each rank keeps:

| weights | sharding | what rank (kvp_rank, tpa_rank) holds; r = kvp_rank * TPA + tpa_rank |
|---|---|---|
| W_Q | by TPA only, replicated over KVP | query heads tpa_rank*Q/TPA + [0, Q/TPA) |
| W_K, W_V | by TPA only, replicated over KVP | KV heads tpa_rank*K/TPA + [0, K/TPA) |
| W_O | rows of TP = N (input columns) | heads tpa_rank*Q/TPA + kvp_rank*Q/N + [0, Q/N) (the all-to-all's) |
| W_gate, W_up / W_down | column / row-parallel, TPF = N | F split like tensor_split, part tpf_rank (= r) |
| embedding, LM head | vocabulary-parallel over N | V split like tensor_split, part r |
| norms | replicated | |

One layer, per rank (phase names are the simulator's terms, helix.step):
qkv_projection -> local_attention -> kvp_all_to_all -> combine_partial_attention -> o_projection ->
o_projection_all_reduce -> ffn -> ffn_all_reduce. Per step: embedding_all_reduce before the first
layer, lm_head_all_gather after the last.

References: paper §2.1-2.2; Llama 3 RoPE scaling as in transformers' ``_compute_llama3_parameters``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helix.errors import HelixInputError
from helix.layout import Layout, check_layout_for_model
from helix.runtime.attention import gqa_attend, helix_attention
from helix.runtime.decoder import (
    DecodeOptions,
    HelixDecoder,
    StepOutput,
    rms_norm,
    vocab_parallel_argmax,
    vocab_parallel_embedding,
    vocab_range,
)
from helix.runtime.kv_cache import KVCache
from helix.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class LlamaArch:
    """The numbers of a Llama config the decoder needs (plain values: pickles without transformers)."""

    vocab_size: int  # V
    hidden_dim: int  # H
    num_layers: int  # L
    num_query_heads: int  # Q
    num_kv_heads: int  # K
    head_dim: int  # Hsz
    ffn_dim: int  # F
    rms_norm_eps: float
    rope_theta: float
    # Llama 3 scaling: (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)
    rope_llama3: tuple[float, float, float, int] | None = None


def arch_from_hf_config(cfg) -> LlamaArch:
    """LlamaArch from a transformers ``LlamaConfig``; unsupported variants raise HelixInputError."""
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ("default", "llama3"):
        raise HelixInputError("model.rope_type", f"unsupported {rope_type!r}; allowed: default, llama3")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise HelixInputError("model", "attention_bias / mlp_bias are not supported")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise HelixInputError("model.hidden_act", f"must be 'silu', got {cfg.hidden_act!r}")
    llama3 = None
    if rope_type == "llama3":
        llama3 = (float(rope["factor"]), float(rope["low_freq_factor"]), float(rope["high_freq_factor"]),
                  int(rope["original_max_position_embeddings"]))
    heads = cfg.num_attention_heads
    return LlamaArch(
        vocab_size=cfg.vocab_size, hidden_dim=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
        num_query_heads=heads, num_kv_heads=cfg.num_key_value_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads, ffn_dim=cfg.intermediate_size,
        rms_norm_eps=float(cfg.rms_norm_eps), rope_theta=float(rope.get("rope_theta", 10000.0)),
        rope_llama3=llama3)


def model_spec(arch: LlamaArch, name: str) -> ModelSpec:
    """The simulator's view of the same model (for layout checks and the traffic formulas)."""
    return ModelSpec(name=name, num_layers=arch.num_layers, hidden_dim=arch.hidden_dim,
                     num_query_heads=arch.num_query_heads, num_kv_heads=arch.num_kv_heads,
                     head_dim=arch.head_dim, ffn_dim=arch.ffn_dim, vocab_size=arch.vocab_size,
                     source="runtime registry")


def check_layout(layout: Layout, arch: LlamaArch, name: str = "llama") -> None:
    """Helix only (DP+EP needs an MoE model), with the simulator's model checks (TPA vs K, EP = 1)."""
    if layout.strategy != "helix":
        raise HelixInputError("strategy", f"must be helix for the dense model {name!r} (dp_ep needs an MoE "
                              f"model), got {layout.strategy!r}")
    # the runtime shards remainders (the first ranks take one row more), so uneven widths are allowed
    check_layout_for_model(layout, model_spec(arch, name), allow_uneven=True)
    Q, n = arch.num_query_heads, layout.tpa * layout.kvp
    if Q % n:  # after the all-to-all every rank owns Q/N whole query heads (attention._pack)
        allowed = [k for k in range(1, Q + 1) if Q % (k * layout.tpa) == 0]
        raise HelixInputError("kvp", f"kvp*tpa (={n}) must divide the query heads ({Q}) of {name!r}: each rank "
                                     f"owns Q/N whole heads after the all-to-all; allowed with tpa "
                                     f"{layout.tpa}: {', '.join(map(str, allowed))}, got {layout.kvp}")


# ---------------------------------------------------------------- RoPE and RMSNorm


def rope_inv_freq(arch: LlamaArch) -> torch.Tensor:
    """Inverse frequencies [Hsz/2], with Llama 3 scaling when configured."""
    Hsz = arch.head_dim
    inv_freq = 1.0 / (arch.rope_theta ** (torch.arange(0, Hsz, 2, dtype=torch.int64).float() / Hsz))
    if arch.rope_llama3 is None:
        return inv_freq
    factor, low, high, original = arch.rope_llama3
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > original / low, inv_freq / factor, inv_freq)  # long wavelengths: / factor
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < original / high) & ~(wavelen > original / low)
    return torch.where(medium, smoothed, scaled)


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, Hsz] at *global* positions [T]."""
    freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, Hsz/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, heads, Hsz] rotated (rotate-half convention of Llama)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


# ---------------------------------------------------------------- the decoder


@dataclass(frozen=True, slots=True)
class _LayerShard:
    input_norm: torch.Tensor  # [H], replicated
    q: torch.Tensor  # [Q/TPA * Hsz, H], by TPA, replicated over KVP
    k: torch.Tensor  # [K/TPA * Hsz, H]
    v: torch.Tensor  # [K/TPA * Hsz, H]
    o: torch.Tensor  # [H, Q/N * Hsz], row-parallel over N
    post_norm: torch.Tensor  # [H]
    gate: torch.Tensor  # [F/N, H], column-parallel over N
    up: torch.Tensor  # [F/N, H]
    down: torch.Tensor  # [H, F/N], row-parallel over N


class HelixLlama(HelixDecoder):
    family = "llama"

    def __init__(self, arch: LlamaArch, state_dict: dict[str, torch.Tensor], comm, name: str = "llama"):
        layout = comm.layout
        check_layout(layout, arch, name)
        self.arch, self.comm = arch, comm
        dev = comm.device
        Q, K, Hsz, TPA, N = arch.num_query_heads, arch.num_kv_heads, arch.head_dim, layout.tpa, layout.gpus_per_stage
        self.Ql, self.Kl, self.Qn = Q // TPA, K // TPA, Q // N  # Q/TPA, K/TPA, Q/N
        q0 = comm.tpa_rank * self.Ql  # first query head of this TPA slice
        kv0 = comm.tpa_rank * self.Kl
        o0 = q0 + comm.kvp_rank * self.Qn  # first head this rank holds after the all-to-all
        f_start, f_stop = vocab_range(arch.ffn_dim, N, comm.tpf_rank)
        self.vocab_start, v_stop = vocab_range(arch.vocab_size, N, comm.stage_rank)

        def w(key: str) -> torch.Tensor:
            return state_dict[key].to(device=dev, dtype=torch.float32)

        def heads(t: torch.Tensor, first: int, count: int) -> torch.Tensor:
            return t[first * Hsz:(first + count) * Hsz].contiguous()

        self.layers = []
        for i in range(arch.num_layers):
            p = f"model.layers.{i}."
            self.layers.append(_LayerShard(
                input_norm=w(p + "input_layernorm.weight"),
                q=heads(w(p + "self_attn.q_proj.weight"), q0, self.Ql),
                k=heads(w(p + "self_attn.k_proj.weight"), kv0, self.Kl),
                v=heads(w(p + "self_attn.v_proj.weight"), kv0, self.Kl),
                o=heads(w(p + "self_attn.o_proj.weight").T, o0, self.Qn).T.contiguous(),
                post_norm=w(p + "post_attention_layernorm.weight"),
                gate=w(p + "mlp.gate_proj.weight")[f_start:f_stop].contiguous(),
                up=w(p + "mlp.up_proj.weight")[f_start:f_stop].contiguous(),
                down=w(p + "mlp.down_proj.weight")[:, f_start:f_stop].contiguous(),
            ))
        embed = w("model.embed_tokens.weight")
        self.embed = embed[self.vocab_start:v_stop].contiguous()  # [V/N, H]
        lm = state_dict.get("lm_head.weight")
        self.lm_head = (embed if lm is None else w("lm_head.weight"))[self.vocab_start:v_stop].contiguous()
        self.final_norm = w("model.norm.weight")
        self.inv_freq = rope_inv_freq(arch).to(dev)
        self.scale = Hsz ** -0.5
        self.cache: KVCache | None = None
        self.options = DecodeOptions()
        self.next_position = 0
        self.steps = 0
        self.hidden: list[torch.Tensor] = []

    # ---- interface
    def prefill(self, prompt_ids: torch.Tensor, options: DecodeOptions) -> StepOutput:
        ids = prompt_ids.to(self.comm.device)  # [B, T], replicated
        B, T = ids.shape
        a, c = self.arch, self.comm
        self.options, self.steps, self.hidden = options, 0, []
        self.cache = KVCache(a.num_layers, B, self.Kl, a.head_dim, c.kvp_rank, c.layout.kvp, T,
                             options.block_tokens, options.ownership, device=c.device)
        c.traffic.step = "prefill"
        chunk = options.prefill_chunk_tokens or T
        for t0 in range(0, T, chunk):
            h = self._forward(ids[:, t0:t0 + chunk], torch.arange(t0, min(t0 + chunk, T), device=c.device),
                              capture=options.capture_hidden)
        self.next_position = T
        return self._head(h[:, -1])

    def decode_step(self, token_ids: torch.Tensor) -> StepOutput:
        if self.cache is None:
            raise RuntimeError("decode_step before prefill")
        self.comm.traffic.step = f"decode{self.steps}"
        positions = torch.tensor([self.next_position], device=self.comm.device)  # global position, [1]
        h = self._forward(token_ids.to(self.comm.device).view(-1, 1), positions)
        self.next_position += 1
        self.steps += 1
        return self._head(h[:, -1])

    def kv_tokens(self) -> int:
        return 0 if self.cache is None else self.cache.length

    # ---- the model
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, capture: bool = False) -> torch.Tensor:
        """ids [B, T] at global positions [T] -> residual stream [B, T, H] after the last layer."""
        h = vocab_parallel_embedding(self.comm, ids, self.embed, self.vocab_start)  # [B, T, H], replicated
        cos, sin = rope_cos_sin(self.inv_freq, positions)  # [T, Hsz], global positions
        self.cache.reserve(positions)  # this rank's slots for the positions it owns
        for i in range(self.arch.num_layers):
            h = self._layer(i, h, positions, cos, sin)
            if capture:
                self.hidden.append(h.clone())
        return h

    def _layer(self, i: int, h: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor,
               sin: torch.Tensor) -> torch.Tensor:
        w, c, a = self.layers[i], self.comm, self.arch
        B, T, _ = h.shape
        Hsz = a.head_dim
        with c.phase("qkv_projection"):
            x = rms_norm(h, w.input_norm, a.rms_norm_eps)  # [B, T, H], replicated
            q = F.linear(x, w.q).view(B, T, self.Ql, Hsz)  # [B, T, Q/TPA, Hsz], replicated over KVP
            k = F.linear(x, w.k).view(B, T, self.Kl, Hsz)  # [B, T, K/TPA, Hsz], replicated over KVP
            v = F.linear(x, w.v).view(B, T, self.Kl, Hsz)  # [B, T, K/TPA, Hsz], replicated over KVP
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # global positions
            self.cache.write(i, k, v)  # only the tokens this KVP rank owns are kept
        k_loc, v_loc, k_positions = self.cache.view(i)  # [B, K/TPA, S_loc, Hsz] x2, [S_loc]
        attend = gqa_attend(q, k_loc, v_loc, positions, k_positions, self.scale)  # local_attention by requests
        attn = helix_attention(c, attend, B, self.options.hopb_chunks)  # [B, T, Q/N, Hsz], exact, sharded by N
        with c.phase("o_projection"):
            o = F.linear(attn.reshape(B, T, self.Qn * Hsz), w.o)  # [B, T, H], partial sum over N
        c.all_reduce(o, "attention", "o_projection_all_reduce")  # [B, T, H], replicated
        h = h + o
        with c.phase("ffn"):
            x = rms_norm(h, w.post_norm, a.rms_norm_eps)  # [B, T, H], replicated
            f = F.linear(F.silu(F.linear(x, w.gate)) * F.linear(x, w.up), w.down)  # [B, T, H], partial over N
        c.all_reduce(f, "stage", "ffn_all_reduce")  # [B, T, H], replicated
        return h + f

    def _head(self, h_last: torch.Tensor) -> StepOutput:
        x = rms_norm(h_last, self.final_norm, self.arch.rms_norm_eps)  # [B, H], replicated
        return vocab_parallel_argmax(self.comm, x, self.lm_head, self.vocab_start, self.arch.vocab_size,
                                     self.options.return_logits)


DECODER = HelixLlama
