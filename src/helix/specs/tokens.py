"""Token counts as people write them: ``1M``, ``128K``, ``1000000``, ``1.5M``.

Suffixes are decimal: K = 10^3, M = 10^6, G = 10^9 (so "1M" is 1,000,000 tokens, not 2^20;
the sensitivity study in the report shows what 2^20 would change). ``Ki``/``Mi`` give binary units.
"""

from __future__ import annotations

from helix.errors import HelixInputError

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
# 2^40 (~1.1 trillion) tokens: five orders beyond any model's positions, and small enough that every byte
# and FLOP count the simulator derives from it stays exact in int64 and float64.
MAX_TOKENS = 2**40


def parse_tokens(text: str | int, field: str = "--context") -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().lower().replace("_", "").replace(",", "")
        number = s.rstrip("kmgi")
        suffix = s[len(number):]
        if suffix not in _SUFFIX or not number:
            raise HelixInputError(field, f"expected a token count like 1M, 128K or 1000000, got {text!r}")
        try:
            scaled = float(number) * _SUFFIX[suffix]
        except ValueError:
            raise HelixInputError(field, f"expected a token count like 1M, 128K or 1000000, got {text!r}") from None
        if not scaled == scaled or abs(scaled) > MAX_TOKENS:  # NaN, inf, 1e400, or past the bound
            raise HelixInputError(field, f"must be a finite token count of at most 2^40, got {text!r}")
        value = int(round(scaled))
        if abs(scaled - value) > 1e-9 * max(1.0, scaled):
            raise HelixInputError(field, f"must be a whole number of tokens, got {text!r}")
    if value < 1:
        raise HelixInputError(field, f"must be >= 1 token, got {text!r}")
    if value > MAX_TOKENS:
        raise HelixInputError(field, f"must be a finite token count of at most 2^40, got {text!r}")
    return value
