"""The KV cache of one rank, sharded along the sequence by an ownership rule (staged concatenation).

Every global position p of a request is stored by exactly one KVP rank, ``kv_owner(p)``; the K/TPA
KV heads of this rank's TPA slice are stored there. The prompt's KV is scattered by the same rule the
decode side uses to append, so prefill and decode agree on where every token lives.

Ownership rules (``block`` = tokens per block, 16 by default as in the paper; TRT-LLM uses 32):

- ``round_robin``: block ``p // block`` lives on KVP rank ``(p // block) % KVP``, for the prompt and
  for generated tokens alike (TRT-LLM today: PRs #9757 and #13180). Per-rank KV lengths differ by at
  most one block at any time.
- ``contiguous``: the prompt's blocks are split into KVP contiguous runs (the first ranks take one
  extra block, like ``tensor_split``); generated tokens go round-robin by block (TRT-LLM between
  #9757 and #13180).
- ``last_rank``: contiguous prompt; every generated token goes to KVP rank KVP-1 (TRT-LLM before
  #9757: that rank's KV keeps growing while the others stay fixed).

A request's global positions (for RoPE and causality) are stored beside the keys: local index s of
the cache is *not* a position. ``value_dim`` is the width of the value slot: ``head_dim`` for GQA,
0 for MLA (one latent "key" [c | k_r] per token, no value). The batch's requests share one prompt
length, so one ownership map serves the batch.
"""

from __future__ import annotations

import torch

from helix.errors import HelixInputError

OWNERSHIP_RULES = ("round_robin", "contiguous", "last_rank")


def check_ownership(rule: str, block_tokens: int) -> None:
    if rule not in OWNERSHIP_RULES:
        raise HelixInputError("ownership", f"unknown rule {rule!r}; allowed: {', '.join(OWNERSHIP_RULES)}")
    if isinstance(block_tokens, bool) or not isinstance(block_tokens, int) or block_tokens < 1:
        raise HelixInputError("block_tokens", f"must be an integer >= 1, got {block_tokens!r}")


def kv_owner(positions: torch.Tensor, prompt_tokens: int, kvp: int, block_tokens: int = 16,
             rule: str = "round_robin") -> torch.Tensor:
    """KVP rank that stores each global position (int64 tensor, same shape as ``positions``)."""
    check_ownership(rule, block_tokens)
    block = positions // block_tokens
    round_robin = block % kvp
    if rule == "round_robin":
        return round_robin
    prompt_blocks = -(-prompt_tokens // block_tokens)
    per, extra = divmod(prompt_blocks, kvp)  # the first `extra` ranks hold per + 1 blocks
    big = extra * (per + 1)
    contiguous = torch.where(block < big, block // (per + 1), extra + (block - big) // max(per, 1))
    generated = round_robin if rule == "contiguous" else torch.full_like(block, kvp - 1)
    return torch.where(positions < prompt_tokens, contiguous, generated)


class KVCache:
    """K [B, K/TPA, S_loc, head_dim] and V [B, K/TPA, S_loc, value_dim] of the tokens this rank owns, per layer."""

    def __init__(self, num_layers: int, batch_size: int, kv_heads: int, head_dim: int, kvp_rank: int, kvp: int,
                 prompt_tokens: int, block_tokens: int = 16, rule: str = "round_robin",
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 value_dim: int | None = None):
        check_ownership(rule, block_tokens)
        self.kvp_rank, self.kvp = kvp_rank, kvp
        self.prompt_tokens, self.block_tokens, self.rule = prompt_tokens, block_tokens, rule
        self.value_dim = head_dim if value_dim is None else value_dim  # 0: no value (MLA)
        capacity = 64
        self.k = [torch.zeros((batch_size, kv_heads, capacity, head_dim), device=device, dtype=dtype)
                  for _ in range(num_layers)]
        self.v = [torch.zeros((batch_size, kv_heads, capacity, self.value_dim), device=device, dtype=dtype)
                  for _ in range(num_layers)]
        self.positions = torch.zeros(capacity, dtype=torch.int64, device=device)  # global position per slot
        self.length = 0  # S_loc: tokens held by this rank (per request, every layer)
        self._owned = torch.zeros(0, dtype=torch.bool)

    def reserve(self, positions: torch.Tensor) -> None:
        """Claim slots for the positions this rank owns among ``positions`` [T] (call once per forward)."""
        owned = kv_owner(positions, self.prompt_tokens, self.kvp, self.block_tokens, self.rule) == self.kvp_rank
        n = int(owned.sum())
        need = self.length + n
        if need > self.positions.numel():
            self._grow(max(need, 2 * self.positions.numel()))
        self.positions[self.length:need] = positions[owned]
        self._start, self.length, self._owned = self.length, need, owned

    def ensure_capacity(self, tokens: int) -> None:
        """Allocate room for ``tokens`` tokens per request now (as a server preallocates), so that the
        appends up to that length do not reallocate and copy the whole cache mid-generation."""
        if tokens > self.positions.numel():
            self._grow(tokens)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
        """Store the owned tokens of k [B, T, K/TPA, head_dim] and v [B, T, K/TPA, value_dim] (None when
        value_dim is 0) into the slots ``reserve`` claimed."""
        owned = self._owned.to(k.device)
        self.k[layer][:, :, self._start:self.length] = k[:, owned].transpose(1, 2)
        if self.value_dim:
            self.v[layer][:, :, self._start:self.length] = v[:, owned].transpose(1, 2)

    def view(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(k, v, positions): [B, K/TPA, S_loc, head_dim], [B, K/TPA, S_loc, value_dim] and the global
        position of each slot [S_loc]."""
        S_loc = self.length
        return self.k[layer][:, :, :S_loc], self.v[layer][:, :, :S_loc], self.positions[:S_loc]

    def _grow(self, capacity: int) -> None:
        def grown(t: torch.Tensor) -> torch.Tensor:
            new = torch.zeros((*t.shape[:2], capacity, t.shape[3]), dtype=t.dtype, device=t.device)
            new[:, :, :t.shape[2]] = t
            return new

        self.k = [grown(t) for t in self.k]
        self.v = [grown(t) for t in self.v]
        positions = torch.zeros(capacity, dtype=torch.int64, device=self.positions.device)
        positions[:self.positions.numel()] = self.positions
        self.positions = positions
