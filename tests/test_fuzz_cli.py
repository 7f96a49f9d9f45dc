"""A fuzz suite: random flags and random spec files against `helix simulate`, `sweep` and `best`.

Every run must end in exit 0, or exit 2 with at most three stderr lines and no traceback; nothing is
written (the commands fuzzed here write no files without --out). Bounded in count, so it runs in CI.
"""

import contextlib
import io
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helix.cli import main

WEIRD = ["0", "-1", "nan", "inf", "-inf", "1e400", "1e30", "1e21", "", " ", "abc", "1.5", "0x10", "9" * 30,
         "1M", "1Mi", "2^20", "é", "\x00", "--", "64", "8", "1"]
FLAGS = {
    "--batch": WEIRD, "--context": WEIRD, "--kvp": WEIRD, "--tpa": WEIRD, "--tpf": WEIRD, "--ep": WEIRD,
    "--gpus": WEIRD, "--pp": WEIRD, "--expert-imbalance": WEIRD, "--hopb-chunks": WEIRD,
    "--redundant-experts": WEIRD, "--mtp-tokens": WEIRD, "--mtp-acceptance": WEIRD,
    "--strategy": ["tp", "tp_pp", "dp_ep", "medha", "helix", "", "TP", "nope"],
    "--engine": ["trtllm", "sglang", "none", "vllm", ""],
    "--hardware": ["gb200-nvl72", "h100", "h800", "ideal", "nope", "/nonexistent.yaml", ""],
    "--model": ["deepseek-r1", "llama-3.1-405b", "nope", "/nonexistent.json", ""],
    "--precision": ["fp4", "fp8", "bf16", "fp3", ""],
    "--kv-cache-precision": ["fp4", "fp8", "bf16", "int3"],
}
SWITCHES = ["--json", "--no-hopb", "--tbo", "--allow-uneven"]


def run(argv) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return int(code or 0), err.getvalue(), out.getvalue()


def check(code: int, err: str, out: str) -> None:
    if code == 1:  # `best`: a valid question with no answer within the budget, said on stdout
        assert "no feasible configuration" in out, (out, err)
        return
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert 1 <= len(err.strip().splitlines()) <= 3, err


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["simulate", "best"]),
       st.lists(st.tuples(st.sampled_from(sorted(FLAGS)), st.data()), min_size=1, max_size=4),
       st.lists(st.sampled_from(SWITCHES), max_size=2))
def test_random_flags_end_in_a_result_or_one_line(command, picks, switches):
    argv = [command, "--model", "deepseek-r1", "--context", "128K"]
    argv += ["--batch", "8"] if command == "simulate" else ["--ttl-budget-ms", "50", "--max-gpus", "8"]
    for flag, data in picks:
        argv += [flag, data.draw(st.sampled_from(FLAGS[flag]))]
    check(*run(argv + switches))


@settings(max_examples=60, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.one_of(st.text(string.ascii_letters + "_", max_size=12), st.integers()),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                              st.lists(st.integers(), max_size=3)), max_size=8).map(lambda d: repr(d).encode())),
    st.sampled_from(["--model", "--hardware"]), st.sampled_from([".yaml", ".json"]))
def test_random_spec_files_end_in_a_result_or_one_line(tmp_path_factory, content, flag, suffix):
    path = tmp_path_factory.mktemp("spec") / f"fuzz{suffix}"
    path.write_bytes(content)
    check(*run(["simulate", flag, str(path), "--batch", "1", "--context", "1K"]))
