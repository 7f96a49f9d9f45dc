"""The decoder interface every model family implements, and the parts all families share.

A family decoder (``HelixLlama``; ``HelixDeepseek`` for MLA + MoE)
is built on every rank from a plain, picklable architecture object and the *full* Hugging Face
state dict, keeps only this rank's shards, and answers three calls:

- ``prefill(prompt_ids [B, T], options) -> StepOutput``: runs the prompt (in chunks of
  ``options.prefill_chunk_tokens`` if set), scatters its KV over the KVP ranks by
  ``options.ownership``, returns the first generated token;
- ``decode_step(token_ids [B]) -> StepOutput``: one decode step for the whole batch: appends the
  new token's KV on its owner rank, returns the next token. Traffic is recorded under step
  ``"decode<i>"`` (``comm.traffic``);
- ``generate(prompt_ids, new_tokens, options) -> Generation``: prefill, then ``new_tokens - 1``
  decode steps, with per-step wall times (shared code below).

Subclasses implement ``prefill``/``decode_step``/``kv_tokens`` (and ``extras`` if they report more);
their module adds ``arch_from_hf_config``, ``model_spec`` and ``check_layout`` (registry). They may
reuse ``vocab_parallel_embedding`` and ``vocab_parallel_argmax`` (the vocabulary split over the N
ranks of the stage; greedy decoding only ships each shard's (max logit, index) per token, 8 bytes,
instead of the logits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from helix.errors import HelixInputError
from helix.runtime.kv_cache import check_ownership


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    block_tokens: int = 16  # staged KV concatenation granularity [paper §2.1.4]
    ownership: str = "round_robin"  # helix.runtime.kv_cache.OWNERSHIP_RULES
    hopb_chunks: int = 1  # 1: no HOP-B; B: one chunk per request
    prefill_chunk_tokens: int | None = None  # None: the whole prompt in one forward
    return_logits: bool = False  # debug: gather the full logits (not counted as traffic)
    capture_hidden: bool = False  # debug: keep the residual stream after each layer of the prefill

    def __post_init__(self) -> None:
        check_ownership(self.ownership, self.block_tokens)
        if isinstance(self.hopb_chunks, bool) or not isinstance(self.hopb_chunks, int) or self.hopb_chunks < 1:
            raise HelixInputError("hopb_chunks", f"must be an integer >= 1, got {self.hopb_chunks!r}")


@dataclass
class StepOutput:
    next_tokens: torch.Tensor  # [B] int64, identical on every rank
    logits: torch.Tensor | None = None  # [B, V] fp32, only with options.return_logits


@dataclass
class Generation:
    tokens: torch.Tensor  # [B, new_tokens]
    prefill_s: float
    step_s: list[float]  # wall time of each decode step on this rank
    logits: list[torch.Tensor] = field(default_factory=list)  # per generated token, [B, V]
    hidden: list[torch.Tensor] = field(default_factory=list)  # prefill residual stream after each layer


class HelixDecoder:
    """Base class: subclasses implement prefill and decode_step (see the module docstring)."""

    family = ""
    hidden: list[torch.Tensor]

    def prefill(self, prompt_ids: torch.Tensor, options: DecodeOptions) -> StepOutput:
        raise NotImplementedError

    def decode_step(self, token_ids: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def kv_tokens(self) -> int:
        """S_loc: tokens of each request whose KV this rank holds."""
        raise NotImplementedError

    def extras(self) -> dict:
        """Results beyond tokens for ``launch.RunResult.extras`` (DeepSeek: the expert load per step).

        Called on every rank after ``generate``; may use unrecorded collectives, so every rank must call it.
        """
        return {}

    def generate(self, prompt_ids: torch.Tensor, new_tokens: int, options: DecodeOptions,
                 progress=None) -> Generation:
        """Greedy decoding: prefill gives the first token, then new_tokens - 1 decode steps.

        ``progress(phase, step)``, if given, is called before the prefill ("prefill", 0) and before
        each decode step ("decode", i) (``helix.runtime.failures.mark``: where a failed rank was)."""
        progress = progress or (lambda phase, step: None)
        if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
            raise HelixInputError("new_tokens", f"must be an integer >= 1, got {new_tokens!r}")
        progress("prefill", 0)
        t0 = time.perf_counter()
        out = self.prefill(prompt_ids, options)
        prefill_s = time.perf_counter() - t0
        tokens, logits, step_s = [out.next_tokens], [out.logits], []
        for i in range(new_tokens - 1):
            progress("decode", i)
            t0 = time.perf_counter()
            out = self.decode_step(tokens[-1])
            step_s.append(time.perf_counter() - t0)
            tokens.append(out.next_tokens)
            logits.append(out.logits)
        return Generation(torch.stack(tokens, dim=1), prefill_s, step_s,
                          logits if options.return_logits else [], list(getattr(self, "hidden", [])))


# ---------------------------------------------------------------- vocabulary-parallel embedding and head


def vocab_range(vocab_size: int, parts: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard ``index`` when V rows are split like torch.tensor_split (first shards +1)."""
    per, extra = divmod(vocab_size, parts)
    start = index * per + min(index, extra)
    return start, start + per + (index < extra)


def vocab_parallel_embedding(comm, ids: torch.Tensor, table: torch.Tensor, start: int) -> torch.Tensor:
    """Rows of this rank's V/N slice, zeros elsewhere, summed over the stage: [B, T, H], replicated."""
    local = ids - start  # [B, T]
    inside = (local >= 0) & (local < table.shape[0])
    h = table[local.clamp(0, max(table.shape[0] - 1, 0))] * inside.unsqueeze(-1)  # [B, T, H], partial over N
    return comm.all_reduce(h, "stage", "embedding_all_reduce")


def vocab_parallel_argmax(comm, h: torch.Tensor, lm_head: torch.Tensor, start: int, vocab_size: int,
                          return_logits: bool = False) -> StepOutput:
    """Greedy token from a vocabulary-parallel LM head: h [B, H] against this rank's rows [V/N, H]."""
    logits = torch.nn.functional.linear(h, lm_head)  # [B, V/N], sharded over N
    idx = logits.argmax(dim=-1)  # [B], first maximum, like torch.argmax over the whole vocabulary
    top = logits.gather(-1, idx.unsqueeze(-1)).squeeze(-1)  # [B]
    global_idx = (idx + start).to(torch.int32).view(torch.float32)  # index bits travel beside the max
    packed = torch.stack([top.float(), global_idx], dim=-1)  # [B, 2]: 8 bytes per token
    gathered = comm.all_gather(packed, "stage", "lm_head_all_gather")  # [N, B, 2], shard order
    best = gathered[..., 0].argmax(dim=0)  # [B]: ties go to the lower shard, i.e. the lower index
    choice = gathered[..., 1].contiguous().view(torch.int32).gather(0, best.unsqueeze(0)).squeeze(0)
    full = _gather_logits(comm, logits, vocab_size) if return_logits else None
    return StepOutput(choice.to(torch.int64), full)


def _gather_logits(comm, logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Debug only: the full [B, V] logits on every rank (unrecorded: not part of a Helix step)."""
    N = comm.group_sizes["stage"]
    width = -(-vocab_size // N)
    padded = torch.nn.functional.pad(logits, (0, width - logits.shape[-1]))  # [B, ceil(V/N)]
    parts = comm.all_gather(padded, "stage", "debug_logits", record=False)  # [N, B, ceil(V/N)]
    sizes = [vocab_range(vocab_size, N, i) for i in range(N)]
    return torch.cat([parts[i, :, :stop - start] for i, (start, stop) in enumerate(sizes)], dim=-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Hugging Face's RMSNorm (Llama and DeepSeek alike): normalise in fp32, cast back, then scale."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)
