"""The ``helix`` command: a thin argparse front over the library.

Each command lives in its own module exposing ``register(subparsers)``; the module's handler takes
the parsed arguments and returns an exit code. Bad input raises HelixInputError, which becomes one
line on stderr and exit code 2, with nothing half-written.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from helix.errors import HelixInputError

COMMAND_MODULES = (
    "helix.commands.simulate",
    "helix.commands.search",
    "helix.commands.reproduce",
    "helix.runtime.command",
    "helix.validation.command",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="helix",
        description="Helix Parallelism for long-context LLM decoding: simulate one decode step, sweep layouts, "
                    "reproduce the paper's experiments, run Helix on torch.distributed.",
        epilog="Token counts accept 1M = 10^6, 128K = 128,000 (decimal); 1Mi = 2^20.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an optional command (its torch dependency) not installed
            missing = exc.name or ""
            if name == missing or name.startswith(missing + ".") or not missing.startswith("helix"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HelixInputError as exc:
        print(f"helix {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
