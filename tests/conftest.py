"""Fixtures shared by every test file. This conftest also applies to tests/runtime and tests/validation,
which skip themselves without torch: nothing here may import torch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helix.cli import main


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int | str | None, str, str]]:
    """Run ``helix`` in this process: ``code, out, err = cli("simulate", "--json")``.

    ``code`` is what ``helix.cli.main`` returned; ``out`` and ``err`` are what it printed (read from capsys,
    which also clears them, so each call sees only its own output). A SystemExit (argparse's own usage errors,
    ``--version``) propagates and fails the test, unless the call passes ``exits=True``: then the exit's code
    is returned in place of main's return value.
    """

    def run(*argv: str, exits: bool = False) -> tuple[int | str | None, str, str]:
        if exits:
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code
        else:
            code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
