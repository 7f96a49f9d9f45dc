"""The ``helix`` command: a thin argparse front over the library.

Each command lives in its own module exposing ``register(subparsers)``; the module's handler takes
the parsed arguments and returns an exit code. Bad input raises HelixInputError, which becomes one
line on stderr and exit code 2, with nothing half-written; commands check where they write before any
work (helix.outputs.check_destination), so an unwritable destination is also exit 2, at once.

Ctrl-C (SIGINT) and SIGTERM end a command with one line on stderr (what became of its output: nothing
written, kept as it was) and exit 130 / 143, no traceback; both run the same cleanup (helix.outputs).
The handlers are the first thing ``main`` does: ``import helix`` and this module import nothing heavy
(helix/__init__ loads its names lazily, and as the program installs a one-line handler before anything
else), so even an interrupt while numpy, the presets or torch are still importing is one line.
An OSError while writing (a full disk, a folder removed under us) is one line naming the path and the
reason, exit 1: the destination passed the checks, the failure is the machine's, and what is on disk is
still the previous result or nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys

from helix import outputs
from helix.errors import HelixInputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version() -> str:
    try:
        return importlib.metadata.version("helix")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="helix",
        description="Helix Parallelism for long-context LLM decoding: simulate one decode step, sweep layouts, "
                    "reproduce the paper's experiments, run Helix on torch.distributed.",
        epilog="Token counts accept 1M = 10^6, 128K = 128,000 (decimal); 1Mi = 2^20.",
    )
    parser.add_argument("--version", action="version", version=f"helix {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # Imported here, not at the top: main() installs its signal handlers before numpy and the presets load
    # (module docstring). A command that runs torch (NEEDS_TORCH) is left out where torch is not installed.
    from helix.commands import calibrate, gpu_check, precision, reproduce, run, search, simulate, validate
    from helix.commands.torch_commands import has_torch

    for module in (simulate, search, reproduce, run, calibrate, validate, gpu_check, precision):
        if getattr(module, "NEEDS_TORCH", False) and not has_torch():
            continue
        module.register(sub)
    return parser


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:  # stderr gone: the exit code still tells
        pass


def _interrupted(command: str | None, signum: int) -> int:
    outputs.stop_raising()
    _say(f"helix{' ' + command if command else ''}: {outputs.interrupted_message()}")
    return 128 + signum


def main(argv: list[str] | None = None) -> int:
    command = None
    with outputs.handle_signals(process_exits=argv is None):  # None: this process is `helix` itself
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            command = args.command
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            code = int(args.func(args) or 0)
            signum = outputs.received()  # an interrupt that a library caught and ignored still counts
            return code if signum is None else _interrupted(command, signum)
        except HelixInputError as exc:
            outputs.stop_raising()
            _say(f"helix {command}: error: {exc}")
            return 2
        except KeyboardInterrupt:
            return _interrupted(command, signal.SIGINT)
        except outputs.Terminated:
            return _interrupted(command, signal.SIGTERM)
        except BrokenPipeError:
            return 0
        except OSError as exc:
            outputs.stop_raising()
            _say(f"helix {command}: error: {outputs.failure_message(exc)}")
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
