"""Reading spec files: exact key sets, numbers with their sources, one-line errors naming the field.

A field in a preset file is either a bare value or ``{value: ..., source: "...", empirical: bool}``.
Built-in presets always use the second form (a test checks every number carries a source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from helix.errors import HelixInputError


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise HelixInputError(what, f"cannot read {str(path)!r} ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise HelixInputError(what, f"{str(path)!r} is not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise HelixInputError(what, f"{str(path)!r} must hold a mapping of field: value")
    return data


def split_value(where: str, name: str, raw: Any) -> tuple[Any, str | None, bool]:
    """(value, source, empirical) of one field in either of the two accepted forms."""
    if isinstance(raw, dict) and "value" in raw:
        extra = set(raw) - {"value", "source", "empirical"}
        if extra:
            raise HelixInputError(f"{where}.{name}", f"unknown keys {sorted(extra)}; allowed: value, source, empirical")
        return raw["value"], raw.get("source"), bool(raw.get("empirical", False))
    return raw, None, False


def as_number(where: str, value: Any, *, minimum: float = 0.0, strict: bool = False,
              integer: bool = False, maximum: float | None = None) -> float:
    """A finite number >= minimum (> minimum when strict); one-line error otherwise."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, str):  # YAML 1.1 reads 8.0e12 (no sign after e) as a string
        try:
            value = float(value)
        except ValueError:
            raise HelixInputError(where, f"must be {kind}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HelixInputError(where, f"must be {kind}, got {value!r}")
    if integer and int(value) != value:
        raise HelixInputError(where, f"must be an integer, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise HelixInputError(where, f"must be finite, got {value!r}")
    bad = value <= minimum if strict else value < minimum
    if bad:
        rel = ">" if strict else ">="
        raise HelixInputError(where, f"must be {rel} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise HelixInputError(where, f"must be <= {maximum:g}, got {value!r}")
    return int(value) if integer else float(value)


def check_keys(where: str, data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(data))
    if missing:
        raise HelixInputError(f"{where}.{missing[0]}", "missing; required fields: " + ", ".join(sorted(required)))
    unknown = sorted(set(data) - required - optional)
    if unknown:
        raise HelixInputError(f"{where}.{unknown[0]}",
                              "unknown field; allowed: " + ", ".join(sorted(required | optional)))
