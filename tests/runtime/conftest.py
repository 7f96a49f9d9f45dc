"""Shared fixtures of the runtime tests: the tiny model, its prompt, and Hugging Face's own answers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

# Every test here runs the runtime: without torch (the default tree's venv) the folder is skipped, not failed
torch = pytest.importorskip("torch")

from runtime_cases import BATCH, NEW_TOKENS, PROMPT_TOKENS  # noqa: E402

from helix.layout import Layout  # noqa: E402
from helix.runtime.launch import Job, RunSpec, prepare  # noqa: E402


@dataclass(frozen=True)
class Reference:
    hf: object
    prompt: torch.Tensor  # [B, T]
    tokens: torch.Tensor  # [B, NEW_TOKENS] from hf.generate
    logits: torch.Tensor  # [B, NEW_TOKENS, V]: logits that chose each generated token
    hidden: tuple  # HF hidden states over prompt + generated tokens (embeddings, layer 0, ...)


@pytest.fixture(scope="session")
def reference() -> Reference:
    prompt = torch.randint(0, 211, (BATCH, PROMPT_TOKENS), generator=torch.Generator().manual_seed(1))
    _, hf = prepare(Job("tiny-llama", Layout.helix(kvp=1), prompt, (RunSpec(NEW_TOKENS),)))
    with torch.no_grad():
        tokens = hf.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)[:, PROMPT_TOKENS:]
        out = hf(torch.cat([prompt, tokens[:, :-1]], dim=1), output_hidden_states=True)
    assert tokens.shape == (BATCH, NEW_TOKENS)
    return Reference(hf, prompt, tokens, out.logits[:, PROMPT_TOKENS - 1:], out.hidden_states)
