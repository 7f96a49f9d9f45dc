"""Model specs: dense GQA or MLA attention, dense FFN or MoE, and their derived sizes.

Public fields are descriptive (paper symbol in the comment). Derived sizes are properties, so a
spec is only its config. Presets live in ``presets/models/*.yaml``; any Hugging Face
``config.json`` of a supported family loads too (``helix.specs.model_loader.load_model(path)``,
helix.specs.hf_config).
Sliding-window / chunked layers (gpt-oss, Mistral, Llama-4) are two optional fields, a checkpoint's
quantisation two more, the config's max_position_embeddings one more (all default to today's
behaviour). DeepSeek-V3.2's DSA is three optional fields (index_heads, index_head_dim, index_topk;
all 0 = dense attention) [S30].

References: paper App. A (GQA KV and weight terms); DeepSeek-V3 config and the absorbed MLA form
([S17], [S15]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helix.cost import kernels
from helix.errors import HelixInputError
from helix.specs.fields import as_number
from helix.specs.precision import check_format

# the integer fields: checked on every spec, coerced when a YAML or config.json is read
INT_FIELDS = (
    "num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "ffn_dim", "vocab_size",
    "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
    "num_experts", "experts_per_token", "expert_ffn_dim", "num_shared_experts", "num_dense_layers",
    "num_expert_groups", "topk_expert_groups", "index_heads", "index_head_dim", "index_topk",
    "sliding_window", "num_sliding_layers", "max_context",
)
_INDEX_FIELDS = ("index_heads", "index_head_dim", "index_topk")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    num_layers: int  # L
    hidden_dim: int  # H (model width; for GQA = Q x Hsz)
    num_query_heads: int  # Q
    num_kv_heads: int  # K (for MLA: the config's nominal value; the cache holds one latent head)
    head_dim: int  # Hsz (GQA head size; MLA: qk_nope + qk_rope)
    ffn_dim: int  # F (dense SwiGLU intermediate size)
    vocab_size: int  # V
    attention: str = "gqa"  # "gqa" or "mla"
    # MLA (DeepSeek-V2/V3): 0 where unused
    q_lora_rank: int = 0
    kv_lora_rank: int = 0  # d_c
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0  # d_rope
    v_head_dim: int = 0
    # MoE: num_experts == 0 means a dense model
    num_experts: int = 0  # E
    experts_per_token: int = 0  # k
    expert_ffn_dim: int = 0  # Fe
    num_shared_experts: int = 0
    num_dense_layers: int = 0  # leading dense layers (first_k_dense_replace)
    num_expert_groups: int = 1
    topk_expert_groups: int = 1
    # DSA (DeepSeek-V3.2's lightning indexer): all 0 = dense attention; otherwise MLA attends to the
    # index_topk (k) cached tokens with the highest index scores of index_heads (H_I) x index_head_dim (D_I)
    index_heads: int = 0  # H_I (index_n_heads)
    index_head_dim: int = 0  # D_I
    index_topk: int = 0  # k
    # Sliding-window (or chunked) layers: num_sliding_layers of the L layers hold and read at most
    # sliding_window (W) cached tokens; 0 = every layer attends to the whole context
    sliding_window: int = 0  # W
    num_sliding_layers: int = 0
    # The checkpoint's weight formats (its quantization_config); "" = the --precision default
    attention_weights_format: str = ""
    ffn_weights_format: str = ""
    max_context: int = 0  # max_position_embeddings; 0 = unknown
    source: str = ""

    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        for f in INT_FIELDS:
            as_number(f"{where}.{f}", getattr(self, f), integer=True, minimum=0)
        for f in ("num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "vocab_size"):
            as_number(f"{where}.{f}", getattr(self, f), integer=True, minimum=0, strict=True)
        if self.attention not in ("gqa", "mla"):
            raise HelixInputError(f"{where}.attention", f"must be 'gqa' or 'mla', got {self.attention!r}")
        if self.attention == "gqa" and self.num_query_heads % self.num_kv_heads:
            raise HelixInputError(f"{where}.num_kv_heads",
                                  f"must divide num_query_heads ({self.num_query_heads}), got {self.num_kv_heads}")
        if self.attention == "mla":
            for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                as_number(f"{where}.{f}", getattr(self, f), integer=True, strict=True)
        if self.num_experts:
            for f in ("experts_per_token", "expert_ffn_dim"):
                as_number(f"{where}.{f}", getattr(self, f), integer=True, strict=True)
            if self.experts_per_token > self.num_experts:
                raise HelixInputError(f"{where}.experts_per_token",
                                      f"must be <= num_experts ({self.num_experts}), got {self.experts_per_token}")
            if self.num_dense_layers > self.num_layers:
                raise HelixInputError(f"{where}.num_dense_layers", f"must be <= num_layers ({self.num_layers})")
        elif self.ffn_dim <= 0:
            raise HelixInputError(f"{where}.ffn_dim", "must be > 0 for a dense model")
        if any(getattr(self, f) for f in _INDEX_FIELDS):
            for f in _INDEX_FIELDS:
                as_number(f"{where}.{f}", getattr(self, f), integer=True, strict=True)
            if self.attention != "mla" or not self.q_lora_rank:
                raise HelixInputError(f"{where}.index_topk", "DSA needs MLA attention with q_lora_rank > 0 "
                                      "(the indexer's query reads the MLA query's compressed q_a)")
            if self.index_head_dim < self.qk_rope_head_dim:
                raise HelixInputError(f"{where}.index_head_dim", f"must be >= qk_rope_head_dim "
                                      f"({self.qk_rope_head_dim}), got {self.index_head_dim}")

        if self.num_sliding_layers > self.num_layers:
            raise HelixInputError(f"{where}.num_sliding_layers", f"must be <= num_layers ({self.num_layers})")
        if self.num_sliding_layers:
            as_number(f"{where}.sliding_window", self.sliding_window, integer=True, strict=True)
        for f in ("attention_weights_format", "ffn_weights_format"):
            if getattr(self, f):
                check_format(f"{where}.{f}", getattr(self, f))

    # ---- kinds
    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_dsa(self) -> bool:
        """DeepSeek-V3.2's sparse attention: a lightning indexer picks index_topk tokens for the MLA."""
        return self.index_topk > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def num_dense_ffn_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def mean_attended_tokens(self, context_tokens):
        """Cached tokens a layer holds and reads, averaged over the L layers: S, or with sliding-window
        layers ((L - L_sw) S + L_sw min(S, W)) / L, so the KV bytes and attention reads summed over layers are
        exact; simplified: every layer and PP stage carries the mean, each KVP rank ceil(mean / KVP) (a window
        under 16 x KVP tokens really sits on fewer ranks' 16-token blocks)."""
        if not self.num_sliding_layers:
            return context_tokens
        window = np.minimum(context_tokens, self.sliding_window)
        full = self.num_layers - self.num_sliding_layers
        return np.ceil((full * np.asarray(context_tokens, dtype=np.float64) + self.num_sliding_layers * window)
                       / self.num_layers).astype(np.int64)

    @property
    def checkpoint_weight_formats(self) -> dict[str, str]:
        """Tensor class -> format the checkpoint stores (the precision default where no flag names it)."""
        pairs = (("attention_weights", self.attention_weights_format), ("ffn_weights", self.ffn_weights_format))
        return {tc: fmt for tc, fmt in pairs if fmt}

    # ---- attention geometry
    @property
    def cache_heads(self) -> int:
        """KV heads the cache holds: K for GQA, one shared latent head for MLA."""
        return 1 if self.is_mla else self.num_kv_heads

    @property
    def kv_elements_per_token_per_cache_head(self) -> int:
        """GQA: K and V of one head (2 Hsz); MLA: latent + decoupled RoPE key (d_c + d_rope)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.head_dim

    @property
    def attention_value_dim(self) -> int:
        """Width per head of the attention output (the all-to-all exchanges values after W_UV for MLA)."""
        return self.v_head_dim if self.is_mla else self.head_dim

    @property
    def attention_flops_per_cached_token_per_head(self) -> int:
        """FLOPs of one query head against one cached token: QK^T plus PV.

        GQA: 2 Hsz + 2 Hsz. MLA, absorbed: 2 (d_c + d_rope) + 2 d_c (FlashMLA's decode FLOP count [S15]).
        """
        if self.is_mla:
            return 2 * (self.kv_lora_rank + self.qk_rope_head_dim) + 2 * self.kv_lora_rank
        return 4 * self.head_dim

    # ---- parameter counts (per layer)
    @property
    def attention_replicated_params(self) -> int:
        """Weights every attention rank holds whole (MLA down-projections shared by all heads)."""
        if self.is_mla:
            q_down = self.hidden_dim * self.q_lora_rank
            kv_down = self.hidden_dim * (self.kv_lora_rank + self.qk_rope_head_dim)
            return q_down + kv_down + self.indexer_params
        return 0

    @property
    def indexer_params(self) -> int:
        """DSA's indexer, replicated on every attention rank (vLLM's ReplicatedLinear): wq_b (q_lora_rank
        -> H_I D_I), wk (H -> D_I) and weights_proj (H -> H_I); the key LayerNorm's 2 D_I left out."""
        heads, dim = self.index_heads, self.index_head_dim
        return self.q_lora_rank * heads * dim + self.hidden_dim * (dim + heads)

    @property
    def attention_query_head_params(self) -> int:
        """Pre-attention weights split over query heads by TPA (GQA W_Q; MLA W_UQ and W_UK, W_UV)."""
        heads = self.num_query_heads
        if self.is_mla:
            q_rank = self.q_lora_rank or self.hidden_dim
            q_up = q_rank * heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
            kv_up = self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)
            return q_up + kv_up
        return self.hidden_dim * heads * self.head_dim

    @property
    def attention_kv_head_params(self) -> int:
        """GQA W_K and W_V of one KV head (2 H Hsz); split by KV head, so ceil(K/TPA) per rank."""
        return 0 if self.is_mla else 2 * self.hidden_dim * self.head_dim

    @property
    def o_projection_params(self) -> int:
        return self.num_query_heads * self.attention_value_dim * self.hidden_dim

    @property
    def attention_params(self) -> int:
        kv = 0 if self.is_mla else self.num_kv_heads * self.attention_kv_head_params
        return self.attention_replicated_params + self.attention_query_head_params + kv + self.o_projection_params

    @property
    def dense_ffn_params(self) -> int:
        return 3 * self.hidden_dim * self.ffn_dim  # SwiGLU: gate, up, down [paper App. A]

    @property
    def expert_params(self) -> int:
        return 3 * self.hidden_dim * self.expert_ffn_dim

    @property
    def router_params(self) -> int:
        return self.hidden_dim * self.num_experts

    @property
    def total_params(self) -> int:
        moe = self.num_experts * self.expert_params + self.num_shared_experts * self.expert_params
        moe += self.router_params
        return (self.num_layers * self.attention_params + self.num_dense_ffn_layers * self.dense_ffn_params
                + self.num_moe_layers * moe + 2 * self.vocab_size * self.hidden_dim)

    def kv_cache_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """KV bytes one cached token costs over all layers, without duplication (DSA: index keys too)."""
        per_layer = self.cache_heads * self.kv_elements_per_token_per_cache_head * kv_bytes_per_element
        return self.num_layers * (per_layer + self.index_key_bytes_per_token)

    @property
    def index_key_bytes_per_token(self) -> float:
        """DSA: one cached token's index key per layer, FP8 plus its scale (helix.cost.kernels); 0 without DSA."""
        return float(kernels.index_key_bytes_per_token(self.index_head_dim)) if self.is_dsa else 0.0
