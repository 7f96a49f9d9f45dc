"""Helix Parallelism: simulator, search, experiments and runtime for long-context LLM decoding.

The public Python API, in a few lines::

    import helix
    model = helix.load_model("deepseek-r1")
    hw = helix.load_hardware("gb200-nvl72")
    layout = helix.Layout.helix(kvp=64, tpa=1, tpf=8, ep=8)
    r = helix.simulate(model, hw, layout, batch_size=16, context_tokens=helix.parse_tokens("1M"))
    print(r.ttl_s, r.tokens_per_s_per_user, r.breakdown)

The names are loaded on first use (PEP 562), so ``import helix`` itself imports nothing heavy. When this
process is the ``helix`` program (``python -m helix``, or the ``helix`` script), the first thing this
package does is make SIGINT / SIGTERM print one line and exit 130 / 143; ``helix.cli.main`` replaces
that with its own handling (the same line, plus what became of the output) a few milliseconds later,
before numpy, YAML, the presets or torch import. So Ctrl-C at any moment after the interpreter has
started is one line, never a traceback. Imported as a library, helix leaves the signals alone.
"""

import _signal  # the C module: ``signal`` would import enum first, widening the window this closes
import os  # os and sys are loaded by the interpreter's start already
import sys


def _is_the_program() -> bool:
    argv0, orig = (sys.argv or [""])[0], getattr(sys, "orig_argv", [])
    if argv0 == "-m":  # `python -m helix`: runpy imports the package before __main__, argv[0] still "-m"
        return any(a == "-mhelix" or (a == "-m" and orig[i + 1:i + 2] == ["helix"]) for i, a in enumerate(orig))
    return os.path.basename(argv0) == "helix"  # the console script


def _stop(signum, frame):  # exercised in a subprocess (tests/test_outputs.py)
    os.write(2, b"helix: interrupted\n")
    os._exit(128 + signum)


if _is_the_program():
    for _sig in (_signal.SIGINT, _signal.SIGTERM):
        if _signal.getsignal(_sig) is not _signal.SIG_IGN:  # an ignored signal (nohup, a background job) stays so
            _signal.signal(_sig, _stop)

import importlib  # noqa: E402  (after the handlers: these take milliseconds)
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from helix.errors import HelixInputError
    from helix.layout import Layout
    from helix.specs import HardwareSpec, ModelSpec, PrecisionSpec, load_hardware, load_model, parse_tokens
    from helix.step import StepResult, simulate

_HOME = {
    "HelixInputError": "helix.errors",
    "Layout": "helix.layout",
    "HardwareSpec": "helix.specs",
    "ModelSpec": "helix.specs",
    "PrecisionSpec": "helix.specs",
    "load_hardware": "helix.specs",
    "load_model": "helix.specs",
    "parse_tokens": "helix.specs",
    "StepResult": "helix.step",
    "simulate": "helix.step",
}

__all__ = [
    "HardwareSpec",
    "HelixInputError",
    "Layout",
    "ModelSpec",
    "PrecisionSpec",
    "StepResult",
    "load_hardware",
    "load_model",
    "parse_tokens",
    "simulate",
]


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'helix' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
