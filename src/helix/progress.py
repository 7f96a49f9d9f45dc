"""Progress bars (tqdm) on stderr for the long commands: ``helix sweep`` (evaluation and CSV writing),
``helix calibrate`` and ``helix validate``.

A bar is drawn only when stderr is a terminal and the command was not asked to be quiet (``--quiet``
where a command has it, ``--json``); otherwise ``bar`` returns a disabled tqdm, which prints nothing, so
logs, pipes and tests stay clean. stdout is never touched: what a command prints there is its answer.
"""

from __future__ import annotations

import sys


def is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def enabled(quiet: bool = False) -> bool:
    return not quiet and is_tty()


def bar(total: int, desc: str, unit: str = "it", quiet: bool = False):
    """A tqdm over ``total`` units on stderr (disabled: prints nothing) that clears itself when done."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled(quiet), leave=False,
                dynamic_ncols=True, unit_scale=unit == "points")
