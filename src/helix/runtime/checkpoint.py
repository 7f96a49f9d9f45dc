"""``helix run --checkpoint DIR``: a local Hugging Face checkpoint (config.json, safetensors weights,
tokenizer files) of a runtime family, loaded instead of a seeded preset.

``check(path)`` reads only ``config.json`` (no torch), so a missing directory, a missing config, an
unsupported ``model_type`` or absent weights is a one-line input error before anything is built or
spawned. The model loads in fp32 on CPU with eager attention, as the presets are built, and nothing is
downloaded (``local_files_only``). Generation is greedy for exactly ``--new-tokens`` tokens: the
checkpoint's end-of-sequence token does not stop it (neither Helix nor the Hugging Face reference),
so both produce the same number of tokens to compare.

A checkpoint's ``Job.model`` is its absolute directory path (``registry.get_model`` resolves an
absolute path through ``entry``), so every rank, spawned or under torchrun, loads the same files.
"""

from __future__ import annotations

import glob
import json
import os

from helix.errors import HelixInputError
from helix.runtime.model_entry import ModelEntry

FLAG = "--checkpoint"
# config.json's model_type -> key of registry.FAMILIES
FAMILY_OF = {"llama": "llama", "deepseek_v3": "deepseek", "deepseek_v32": "deepseek_v32"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def check(path: str) -> tuple[str, dict, str]:
    """(absolute path, config.json as a dict, family) of a checkpoint directory; HelixInputError names --checkpoint."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        what = "is not a directory" if os.path.exists(full) else "not found"
        raise HelixInputError(FLAG, f"{path!r}: {what} (give a Hugging Face checkpoint directory: config.json, "
                                    "*.safetensors, tokenizer files)")
    config_path = os.path.join(full, "config.json")
    if not os.path.isfile(config_path):
        raise HelixInputError(FLAG, f"{path!r} has no config.json (a Hugging Face checkpoint directory, as "
                                    "save_pretrained writes it)")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HelixInputError(FLAG, f"{config_path}: not readable JSON ({exc})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in FAMILY_OF:
        raise HelixInputError(FLAG, f"model_type {model_type!r} in {config_path} is not a runtime family; "
                                    f"allowed: {', '.join(FAMILY_OF)}")
    if not glob.glob(os.path.join(full, "*.safetensors")):
        raise HelixInputError(FLAG, f"{path!r} has no *.safetensors weights (save with save_pretrained, "
                                    "safe_serialization=True)")
    return full, config, FAMILY_OF[model_type]


def has_tokenizer(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES)


def entry(path: str) -> ModelEntry:
    """A ``ModelEntry`` whose ``build`` loads the checkpoint at ``path``."""
    full, config, fam = check(path)
    return ModelEntry(full, fam, lambda: load(full), f"checkpoint {full} ({config['model_type']})")


def load(path: str):
    """The checkpoint as a transformers model in eval mode, fp32, on CPU; EOS does not end generation."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" on stderr: helix run's own output stays alone
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager",
                                                 local_files_only=True)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # generate exactly --new-tokens, as Helix does
        setattr(model.generation_config, name, None)
    return model.float().eval()


def tokenizer(path: str, flag: str = "--prompt"):
    """The checkpoint's tokenizer (local files only); HelixInputError naming ``flag`` when it has none."""
    if not has_tokenizer(path):
        raise HelixInputError(flag, f"needs a tokenizer in the checkpoint: {path} has none of "
                                    f"{', '.join(TOKENIZER_FILES)}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def encode(tok, text: str, batch: int, vocab_size: int):
    """[batch, T] int64: ``text`` tokenized once and repeated for every request."""
    import torch

    ids = tok(text)["input_ids"]
    if not ids:
        raise HelixInputError("--prompt", f"{text!r} encodes to no tokens")
    if max(ids) >= vocab_size:
        raise HelixInputError("--prompt", f"the tokenizer gives id {max(ids)} >= the model's vocab_size ({vocab_size})")
    return torch.tensor([ids] * batch, dtype=torch.int64)
