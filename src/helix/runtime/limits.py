"""What a runtime job may ask for: timeouts, positions and memory, checked before anything is spawned.

- ``timeout_s`` (``--timeout-s``, per collective and for process-group setup) must be finite and in
  [1 s, 1 day]. Below 1 s a scheduling hiccup on a loaded CPU aborts healthy ranks; above a day a
  dead or stopped peer is no longer detected in useful time (and ``timedelta`` overflows at ~1e14 s).
- ``job_timeout_s`` (``--job-timeout-s``, the whole job's wall clock) is None (no limit, the
  default) or a finite number of seconds in [1, 10^7] (about 4 months).
- the prompt plus the new tokens must fit the model's ``max_position_embeddings``;
- the ranks on this machine must fit its physical memory (``os.sysconf``): each spawned rank holds
  about 260 MB (torch and the tiny model, measured RSS ~250 MB) plus the model's state dict, its KV
  shard and the prefill's attention scores: B x Q/TPA x T x min(S_loc, 8192) fp32 values
  (``attention.KV_BLOCK_TOKENS``; MLA attends the whole shard at once), about three such buffers
  alive at once (scores, masked scores, probabilities: measured 3.2x). The launcher's Hugging Face
  reference needs B x Q x T^2 fp32 values the same way. ``check_prompt`` checks the prompt tensor
  itself (B x T int64) before it is drawn, so no batch or prompt length can exhaust memory first.
"""

from __future__ import annotations

import math
import os

from helix.errors import HelixInputError

TIMEOUT_MIN_S, TIMEOUT_MAX_S = 1.0, 86400.0
JOB_TIMEOUT_MAX_S = 1e7
BASE_RANK_BYTES = 260e6  # an idle spawned worker (torch + a tiny model): ~250 MB RSS, measured
LAUNCHER_BYTES = 400e6  # the launching process (torch, transformers, the HF model): ~385 MB RSS, measured
ATTENTION_COPIES = 3  # fp32 [.., T, S] buffers alive at once in eager attention (measured peak 3.2x)


def check_timeout(field: str, value, low: float = TIMEOUT_MIN_S, high: float = TIMEOUT_MAX_S,
                  why: str = "1 s to 1 day: shorter aborts healthy ranks on a busy CPU, longer leaves a "
                             "dead peer undetected") -> float:
    """``value`` as a float in [low, high]; HelixInputError naming ``field`` otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HelixInputError(field, f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(v) or not low <= v <= high:
        raise HelixInputError(field, f"must be between {low:g} and {high:g} s ({why}), got {value!r}")
    return v


def check_job_timeout(field: str, value) -> float | None:
    if value is None:
        return None
    return check_timeout(field, value, TIMEOUT_MIN_S, JOB_TIMEOUT_MAX_S, "leave it unset for no limit")


def physical_memory_bytes() -> int:
    """Installed RAM of this machine (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_positions(prompt_tokens: int, new_tokens: int, max_positions: int | None, model: str) -> None:
    if not max_positions:
        return
    if prompt_tokens > max_positions:
        raise HelixInputError("--prompt-len", f"must be <= {model}'s max positions ({max_positions}), "
                                              f"got {prompt_tokens}")
    if prompt_tokens + new_tokens > max_positions:
        raise HelixInputError("--new-tokens", f"prompt + new tokens (={prompt_tokens + new_tokens}) must be "
                                              f"<= {model}'s max positions ({max_positions})")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_memory(spec, kvp: int, tpa: int, n_ranks: int, batch: int, prompt_tokens: int, new_tokens: int,
                 state_bytes: int, dp: int = 1, total: int | None = None) -> None:
    """Refuse a job whose ranks (``n_ranks`` on this machine) cannot fit its physical memory."""
    total = physical_memory_bytes() if total is None else total
    if not total:
        return
    idle = n_ranks * (BASE_RANK_BYTES + 2 * state_bytes) + LAUNCHER_BYTES
    if idle > total:
        raise HelixInputError("--gpus", f"{n_ranks} ranks need about {_gb(idle)} (about "
                                        f"{_gb(BASE_RANK_BYTES + 2 * state_bytes)} each), more than this "
                                        f"machine's {_gb(total)} of memory; use fewer ranks (--kvp, --tpa, --gpus)")
    T, S = prompt_tokens, prompt_tokens + new_tokens
    s_loc = -(-T // kvp) + 16  # a block of slack for the ownership rule
    width = s_loc if spec.is_mla else min(s_loc, 8192)
    scores = ATTENTION_COPIES * -(-batch // dp) * (spec.num_query_heads // tpa) * T * width * 4
    kv = spec.kv_cache_bytes_per_token(4) / (tpa if not spec.is_mla else 1) * -(-batch // dp) * (-(-S // kvp) + 16)
    per_rank = BASE_RANK_BYTES + 2 * state_bytes + scores + kv
    workers = n_ranks * per_rank + LAUNCHER_BYTES
    reference = LAUNCHER_BYTES + ATTENTION_COPIES * batch * spec.num_query_heads * T * T * 4
    if max(workers, reference) > total:
        what = (f"{n_ranks} rank{'s' * (n_ranks != 1)} x {_gb(per_rank)}" if workers >= reference
                else f"{_gb(reference)} for the Hugging Face reference")
        raise HelixInputError("--prompt-len", f"a {T}-token prompt with --batch {batch} needs about {what}, "
                                              f"more than this machine's {_gb(total)} of memory; shorten "
                                              "--prompt-len or --batch (or raise --kvp)")


def check_prompt(batch: int, prompt_tokens: int, total: int | None = None) -> None:
    """Before the prompt tensor (B x T int64) is drawn: it must fit this machine's memory beside the
    launcher. Everything the job needs beyond it is check_memory's, once the model is built."""
    total = physical_memory_bytes() if total is None else total
    need = LAUNCHER_BYTES + batch * prompt_tokens * 8
    if total and need > total:
        raise HelixInputError("--batch", f"the prompt alone, --batch {batch} x --prompt-len {prompt_tokens} tokens, "
                                         f"needs {_gb(need)}, more than this machine's {_gb(total)} of memory")
