"""Reading spec files: exact key sets, numbers with their sources, one-line errors naming the field.

A field in a preset file is either a bare value or ``{value: ..., source: "...", empirical: bool}``.
Built-in presets always use the second form (a test checks every number carries a source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from helix.errors import HelixInputError

# Spec files are a few KB (op models ~6 MB): 64 MiB bounds what a wrong path (a dataset, a device) can cost.
MAX_SPEC_BYTES = 64 * 2**20
# Integer spec fields (layers, widths, heads, vocabulary) below 2^31: the products the step forms from
# them and from a batch and a context stay inside int64 and exact in float64.
MAX_SPEC_INTEGER = 2**31 - 1


def read_text(path: Path, what: str) -> str:
    """A spec file's text: at most MAX_SPEC_BYTES, strict UTF-8; one-line errors naming ``what``."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise HelixInputError(what, f"cannot read {str(path)!r} ({exc.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise HelixInputError(what, f"{str(path)!r} is larger than {MAX_SPEC_BYTES // 2**20} MiB; not a spec file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HelixInputError(what, f"{str(path)!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                                    f"{exc.start}); save it as UTF-8") from None


def parse_nested(loader, text: str, path: Path, what: str, kind: str):
    """``loader(text)`` with a too-deeply-nested document turned into a one-line error."""
    try:
        return loader(text)
    except RecursionError:
        raise HelixInputError(what, f"{str(path)!r} nests too deeply to be a {kind} spec file") from None


def read_yaml(path: Path, what: str) -> dict[str, Any]:
    text = read_text(path, what)
    try:
        data = parse_nested(yaml.safe_load, text, path, what, "YAML")
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
    if value != value or value in (float("inf"), float("-inf")):
        raise HelixInputError(where, f"must be finite, got {value!r}")
    if integer and int(value) != value:
        raise HelixInputError(where, f"must be an integer, got {value!r}")
    if integer and maximum is None:
        maximum = MAX_SPEC_INTEGER
    bad = value <= minimum if strict else value < minimum
    if bad:
        rel = ">" if strict else ">="
        raise HelixInputError(where, f"must be {rel} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        bound = f"{int(maximum):,}" if integer else f"{maximum:g}"
        raise HelixInputError(where, f"must be <= {bound}, got {value!r}")
    return int(value) if integer else float(value)


def check_keys(where: str, data: dict[str, Any], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - set(data))
    if missing:
        raise HelixInputError(f"{where}.{missing[0]}", "missing; required fields: " + ", ".join(sorted(required)))
    unknown = sorted(set(data) - required - optional)
    if unknown:
        raise HelixInputError(f"{where}.{unknown[0]}",
                              "unknown field; allowed: " + ", ".join(sorted(required | optional)))
