"""Loading a model spec: a preset name, a YAML spec file or a Hugging Face ``config.json``.

Above both ``helix.specs.model`` (the spec and its checks) and ``helix.specs.hf_config`` (the
config.json reader, which builds a ModelSpec), so the loader that chooses between them imports both
at the top and neither imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helix.errors import HelixInputError
from helix.specs.fields import as_number, check_keys, read_yaml, split_value
from helix.specs.hf_config import from_hf_config
from helix.specs.model import INT_FIELDS, ModelSpec

PRESET_DIR = Path(__file__).parent / "presets" / "models"

_REQUIRED = {"name", "num_layers", "hidden_dim", "num_query_heads", "num_kv_heads", "head_dim", "vocab_size"}
_OPTIONAL = set(ModelSpec.__slots__) - _REQUIRED - {"source"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _from_mapping(where: str, data: dict[str, Any]) -> ModelSpec:
    data = dict(data)
    source = data.pop("source", "")
    data.pop("notes", None)
    check_keys(where, data, _REQUIRED, _OPTIONAL)
    values = {k: split_value(where, k, v)[0] for k, v in data.items()}
    for k in INT_FIELDS:
        if k in values:
            values[k] = as_number(f"{where}.{k}", values[k], integer=True)
    return ModelSpec(**values, source=str(source))


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A preset name (``helix models``), a YAML spec file, or a Hugging Face ``config.json``."""
    text = str(name_or_path)
    if text in preset_names():
        path = PRESET_DIR / f"{text}.yaml"
        return _from_mapping(f"model {text!r}", read_yaml(path, "--model"))
    path = Path(text)
    if path.suffix == ".json" and path.exists():
        return from_hf_config(path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return _from_mapping(path.name, read_yaml(path, "--model"))
    raise HelixInputError("--model", f"unknown model {text!r}; allowed: {', '.join(preset_names())}, "
                          "or a path to a config.json / .yaml file")
