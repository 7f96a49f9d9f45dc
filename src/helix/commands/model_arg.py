"""``--model``: a preset name or a spec file; a path that does not exist says "file not found", not "unknown model"."""

from __future__ import annotations

import os
from pathlib import Path

from helix.errors import HelixInputError
from helix.specs import load_model
from helix.specs.model_loader import preset_names

SPEC_SUFFIXES = (".json", ".yaml", ".yml")


def load_model_arg(text: str):
    """load_model, with the missing-file case named as such (before the spec loader's generic message)."""
    text = str(text)
    if text not in preset_names():
        path = Path(text)
        looks_like_path = path.suffix in SPEC_SUFFIXES or os.sep in text or (os.altsep or os.sep) in text
        if looks_like_path and not path.exists():
            raise HelixInputError("--model", f"file not found: {text!r} (give a preset: {', '.join(preset_names())}, "
                                             "or the path of a Hugging Face config.json / a .yaml spec)")
        if path.is_dir():
            raise HelixInputError("--model", f"{text!r} is a folder; give the path of its config.json")
    return load_model(text)
