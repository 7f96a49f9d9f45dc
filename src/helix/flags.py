"""argparse types of the numeric flags: a value out of range is argparse's one-line error naming the flag
(exit 2, before the command starts).

``integer``: an integer of magnitude below 2^31 (``MAX_FLAG_INTEGER``). Every count a command takes (GPUs,
widths, batch, tokens, chunks, repeats, ranks) is far below that, and bounding it where it is parsed keeps
the products formed from it (batch x context x layers, a prompt tensor of batch x tokens) inside int64 and
exact in float64, so a mistyped ``1e21`` never reaches numpy or torch. Ranges tighter than that (>= 1,
<= the cores) are checked by each command, naming the flag. ``seed``: 0 to 2^64 - 1, what torch's
generator takes.
"""

from __future__ import annotations

import argparse

MAX_FLAG_INTEGER = 2**31 - 1
MAX_SEED = 2**64 - 1


def _parse(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def integer(text: str) -> int:
    value = _parse(text)
    if abs(value) > MAX_FLAG_INTEGER:
        raise argparse.ArgumentTypeError(f"must be an integer below 2^31 (= {MAX_FLAG_INTEGER + 1:,}), got {text}")
    return value


def seed(text: str) -> int:
    value = _parse(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2^64 - 1 (a torch generator's seed), "
                                         f"got {text}")
    return value
