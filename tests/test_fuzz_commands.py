"""A fuzz suite for the commands test_fuzz_cli.py does not cover: `sweep`, `reproduce`, `models`, `hardware`,
`calibrate`, `validate`, `gpu-check` and `run`.

Every example holds one input that is surely bad (a number out of range, a file that is not a spec, an
unwritable or taken --out, a flag the command does not take) among random other flags, good or bad, so no
example measures or writes anything: each must end in exit 2 with one to three stderr lines, no traceback,
and nothing left in its folder. The CLI runs in process, so the whole suite takes seconds.
"""

import contextlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.cli import main

NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "99999999999999999999", "2147483648"]
BAD_FILES = ["missing.yaml", "adir", "binary.yaml", "utf16.yaml", "empty.yaml", "deep.json", "afile/x.yaml"]
BAD_OUT = ["", " ", "afile/out", "afile", "/proc/helix-fuzz-out"]


def bad(flag, values):
    return [(flag, v) for v in values]


BASE = {
    "sweep": ["--model", "deepseek-r1", "--context", "128K", "--max-gpus", "8", "--quiet", "--out", "out"],
    "reproduce": ["--quick", "--quiet"],
    "models": [],
    "hardware": [],
    "calibrate": ["--quick", "--out", "p.yaml"],
    "validate": ["--quick", "--hardware", "h100", "--out", "v"],
    "gpu-check": ["--cpu-smoke", "--out", "g"],
    "run": ["--model", "tiny-llama", "--prompt-len", "16", "--new-tokens", "4"],
}
# one of these in every example: each alone makes the command exit 2 before any work
SURELY_BAD = {
    "sweep": (bad("--max-gpus", ["0", "-1", "4097", "abc", "1e400", "99999999999999999999"])
              + bad("--context", ["0", "-1", "nan", "inf", "1e400", "1e30", "abc"])
              + bad("--strategies", ["nope", "", "tp,nope"]) + bad("--out", BAD_OUT + ["foreign"])
              + bad("--model", ["nope"] + BAD_FILES) + bad("--hardware", ["nope"] + BAD_FILES)
              + bad("--expert-imbalance", ["nan", "0", "-1", "inf"]) + bad("--redundant-experts", ["-1", "abc"])),
    "reproduce": bad("--out", BAD_OUT + ["foreign"]) + [("--bogus", None), ("--quick=1", None), ("positional", None)],
    "models": [("--bogus", None), ("extra", None), ("--json=1", None), ("--model", "x")],
    "hardware": [("--bogus", None), ("extra", None), ("--json=1", None), ("--engine", "trtllm")],
    "calibrate": (bad("--max-ranks", NUMBERS + ["100000"]) + bad("--out", BAD_OUT + ["p.txt", "adir", "/proc/p.yaml"])
                  + bad("--name", ["", " ", "a\nb", "x" * 101]) + [("--json", None), ("--hardware", "h100"),
                                                                  ("--engine", "trtllm"), ("--out-dir", "d")]),
    "validate": (bad("--repeats", NUMBERS + ["10001"]) + bad("--hardware", ["nope", ""] + BAD_FILES)
                 + bad("--out", BAD_OUT)),
    "gpu-check": bad("--out", BAD_OUT) + [("--bogus", None), ("positional", None), ("--cpu-smoke=1", None)],
    "run": (bad("--timeout-s", ["0", "-1", "nan", "inf", "1e18", "abc", "0.5"])
            + bad("--job-timeout-s", ["0", "-1", "nan", "1e400", "abc"]) + bad("--batch", ["0", "-1", "abc", "1e3"])
            + bad("--new-tokens", ["0", "1", "-1"]) + bad("--kvp", ["0", "-1", "abc"]) + bad("--tpa", ["0", "-1"])
            + bad("--hopb-chunks", ["0", "-1", "999"]) + bad("--ownership", ["nope", ""])
            + bad("--prompt-len", ["0", "-1", "1e400"]) + bad("--model", ["nope", "", "deepseek-r1"])
            + bad("--strategy", ["tp", ""]) + bad("--seed", ["abc", "1.5"]) + [("--bogus", None)]
            + bad("--checkpoint", ["", "missing.yaml", "adir", "afile"]) + bad("--prompt", ["hello", ""])),
}
# random company: good or bad, never the surely-bad flag itself (argparse keeps the last of a repeated flag)
EXTRAS = {
    "sweep": {"--hardware": ["h100", "gb200-nvl72"], "--engine": ["trtllm", "none"], "--precision": ["fp4", "fp8"],
              "--no-hopb": None, "--tbo": None, "--allow-uneven": None, "--redundant-experts": ["0", "4"],
              "--strategies": ["helix", "tp,dp_ep"], "--expert-imbalance": ["1.5"], "--mtp-tokens": ["0", "1"]},
    "reproduce": {"--quiet": None, "--quick": None},
    "models": {"--json": None},
    "hardware": {"--json": None},
    "calibrate": {"--name": ["smoke", "cpu"], "--max-ranks": ["1"], "--quick": None},
    "validate": {"--repeats": ["1", "3"], "--quick": None},
    "gpu-check": {"--cpu-smoke": None},
    "run": {"--hopb": None, "--seed": ["0", "7"], "--ownership": ["round_robin", "contiguous"], "--batch": ["2", "4"],
            "--block-tokens": ["16", "8"], "--tpa": ["1", "2"], "--kvp": ["1", "2"], "--timeout-s": ["30"],
            "--strategy": ["helix", "dp_ep"], "--gpus": ["2", "3"], "--tpf": ["1", "2"], "--ep": ["1", "2"]},
}
EXAMPLES = {"sweep": 40, "reproduce": 15, "models": 6, "hardware": 6, "calibrate": 30, "validate": 30,
            "gpu-check": 15, "run": 40}
FIXTURES = ["adir", "afile", "binary.yaml", "deep.json", "empty.yaml", "foreign", "utf16.yaml"]


def make_fixtures(folder):
    (folder / "adir").mkdir()
    (folder / "afile").write_text("keep")
    (folder / "binary.yaml").write_bytes(bytes(range(256)))
    (folder / "utf16.yaml").write_bytes("name: x\n".encode("utf-16"))
    (folder / "empty.yaml").write_text("")
    (folder / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (folder / "foreign").mkdir()
    (folder / "foreign" / "mine.txt").write_text("keep")


@contextlib.contextmanager
def inside(folder):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_in(folder, argv) -> tuple[int, str]:
    err = io.StringIO()
    with inside(folder), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return int(code or 0), err.getvalue()


def example(command):
    @st.composite
    def draw(draw_):
        flag, value = draw_(st.sampled_from(SURELY_BAD[command]))
        pool = sorted(f for f in EXTRAS[command] if f != flag)
        argv = [command, *BASE[command]]
        for extra in (draw_(st.lists(st.sampled_from(pool), max_size=3, unique=True)) if pool else []):
            values = EXTRAS[command][extra]
            argv += [extra] if values is None else [extra, draw_(st.sampled_from(values))]
        if flag == "positional" or flag.startswith(("--quick=", "--cpu-smoke=")) or flag in ("extra", "--bogus"):
            return argv + [flag]
        return argv + ([flag] if value is None else [flag, value])
    return draw()


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_a_surely_bad_input_among_random_flags_is_one_line_exit_2(tmp_path_factory, command):
    if command == "run":  # without torch helix has no `run`: argparse's one line would pass for nothing
        pytest.importorskip("torch")
    @settings(max_examples=EXAMPLES[command], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(example(command))
    def check(argv):
        folder = tmp_path_factory.mktemp(command)
        make_fixtures(folder)
        code, err = run_in(folder, argv)
        lines = err.strip().splitlines()
        assert code == 2, (argv, code, err)
        assert "Traceback" not in err and 1 <= len(lines) <= 3, (argv, err)
        assert sorted(p.name for p in folder.iterdir()) == FIXTURES, argv  # nothing written, nothing removed
        assert [p.name for p in (folder / "foreign").iterdir()] == ["mine.txt"]
        assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(folder.name + ".")) == []

    check()
