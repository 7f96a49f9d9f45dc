"""Every broken rank a clean stop: a killed or stopped worker ends ``helix run`` in bounded time with
one line and leaves no process behind; layouts, prompts and timeouts the runtime cannot run are
refused before spawning; a healthy run has no hidden deadline. Faults are injected with the test
hook ``HELIX_TEST_FAULT=rank:phase:kind`` (helix.runtime.failures).

No assertion reads a clock: each test names the mechanism that must end the job (a dead rank, a
collective's --timeout-s, the launcher's stall or job deadline) and checks that the one-line error is
that mechanism's; a hang is ended by a generous job deadline (``HANG``), whose own message would
fail the test."""

from __future__ import annotations

import os
import uuid

import pytest

from helix.cli import main
from helix.runtime import failures, launch, limits
from helix.runtime.launch import WorkerError, spawn

SMALL = ["run", "--model", "tiny-llama", "--kvp", "2", "--batch", "2", "--prompt-len", "8"]
HANG = ["--job-timeout-s", "120"]  # far beyond what each test's own mechanism needs


def _tagged(monkeypatch) -> str:
    """A unique environment tag that every spawned worker inherits (to find leftovers in /proc)."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv("HELIX_TEST_TAG", tag)
    return tag


def _leftovers(tag: str) -> list[int]:
    """Live worker processes with ``tag`` (not this process, nor multiprocessing's resource tracker,
    which this process starts once and which ends with it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f, open(f"/proc/{pid}/cmdline", "rb") as c:
                mine = f"HELIX_TEST_TAG={tag}".encode() in f.read() and b"resource_tracker" not in c.read()
        except OSError:
            continue
        if mine and int(pid) != os.getpid():
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_killed_worker_ends_the_job_with_one_line(cli, monkeypatch):
    tag = _tagged(monkeypatch)
    monkeypatch.setenv("HELIX_TEST_FAULT", "1:decode2:kill")
    rc, _, err = cli(*SMALL, "--new-tokens", "6", "--timeout-s", "5", *HANG)
    assert rc == 3 and err.count("\n") == 1, err
    assert err.startswith("helix run: error: rank 1 died in decode step 2 (killed by SIGKILL)"), err
    assert "Remedy:" in err and "Traceback" not in err and "job deadline" not in err
    assert not _leftovers(tag)


@pytest.mark.slow
def test_a_stopped_worker_ends_the_job_and_is_killed(cli, monkeypatch):
    tag = _tagged(monkeypatch)
    monkeypatch.setenv("HELIX_TEST_FAULT", "0:decode1:stop")
    rc, _, err = cli(*SMALL, "--new-tokens", "6", "--timeout-s", "3", *HANG)
    assert rc == 3 and err.count("\n") == 1, err
    assert err.startswith("helix run: error: rank 0 stopped responding in decode step 1"), err
    # ended by its peer's collective timing out (--timeout-s), not by the job deadline
    assert "process stopped" in err and "timed out after 3 s (--timeout-s)" in err and "job deadline" not in err
    assert not _leftovers(tag)


@pytest.mark.slow
def test_a_rank_that_raises_is_named_with_its_phase(cli, monkeypatch):
    monkeypatch.setenv("HELIX_TEST_FAULT", "1:prefill:raise")
    rc, _, err = cli(*SMALL, "--new-tokens", "3", "--timeout-s", "5", *HANG)
    assert rc == 3 and err.count("\n") == 1, err
    assert err.startswith("helix run: error: rank 1 failed in prefill: RuntimeError: HELIX_TEST_FAULT"), err


def _stop_rank_1(rank, world_size, init_method, payload):
    if rank == 1:
        os.kill(os.getpid(), 19)  # SIGSTOP after every collective: only the launcher can notice
    return rank


@pytest.mark.slow
def test_a_rank_stalled_after_its_peers_finished_is_killed(monkeypatch):
    tag = _tagged(monkeypatch)
    with pytest.raises(WorkerError) as info:
        spawn(_stop_rank_1, 2, None, stall_s=2, timeout_s=120)  # a hang: the job deadline's message, not this
    assert not _leftovers(tag)
    assert info.value.summary().startswith("rank 1 stopped responding in spawn (no result 2 s after rank 0 "
                                           "finished; process stopped); the other ranks finished")


def test_the_sleep_hook_sleeps_at_every_decode_step(monkeypatch):
    """What the next test relies on, without a clock: ``sleepS`` sleeps S seconds at each decode step."""
    slept = []
    monkeypatch.setattr(failures.time, "sleep", slept.append)
    monkeypatch.setattr(failures.PROGRESS, "state", failures.PROGRESS.state)  # restored after the marks below
    monkeypatch.setenv("HELIX_TEST_FAULT", "*:decode:sleep4")
    for phase, step in (("prefill", 0), ("decode", 0), ("decode", 1), ("report", 0)):
        failures.mark(phase, step)
    assert slept == [4.0, 4.0]


@pytest.mark.slow
def test_a_run_longer_than_many_collective_timeouts_is_not_aborted(capsys, monkeypatch):
    # every rank sleeps 4 s before each of the 4 decode steps, between collectives: each gap is longer
    # than --timeout-s (3 s) and the job lasts more than 5 of them, yet nothing times out (no hidden
    # deadline); a real hang would still end at the collectives' --timeout-s
    monkeypatch.setenv("HELIX_TEST_FAULT", "*:decode:sleep4")
    code = main([*SMALL, "--new-tokens", "5", "--timeout-s", "3"])
    out = capsys.readouterr().out
    assert code == 0 and "tokens match Hugging Face generate (single device): yes" in out


@pytest.mark.slow
def test_the_job_timeout_is_explicit(cli, monkeypatch):
    monkeypatch.setenv("HELIX_TEST_FAULT", "*:decode:sleep1")
    rc, _, err = cli(*SMALL, "--new-tokens", "30", "--job-timeout-s", "4")
    assert rc == 3 and err.count("\n") == 1, err
    assert err.startswith("helix run: error: job stopped: no result within 4 s (the job deadline); rank 0 in ")
    assert "Remedy: raise --job-timeout-s" in err


@pytest.fixture
def no_spawn(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("spawned workers for input that must be refused")

    monkeypatch.setattr(launch, "spawn", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--kvp", "5"], "kvp: kvp*tpa (=5) must divide the query heads (8) of 'tiny-llama'"),
    (["--kvp", "16"], "kvp: kvp*tpa (=16) must divide the query heads (8)"),
    (["--kvp", "5", "--tpa", "2"], "kvp: kvp*tpa (=10) must divide the query heads (8) of 'tiny-llama': each rank "
                                   "owns Q/N whole heads after the all-to-all; allowed with tpa 2: 1, 2, 4, got 5"),
    (["--prompt-len", "100000"], "--prompt-len: must be <= tiny-llama's max positions (8192), got 100000"),
    (["--prompt-len", "8000", "--new-tokens", "500"], "--new-tokens: prompt + new tokens (=8500) must be <= "
                                                      "tiny-llama's max positions (8192)"),
    (["--model", "bench-llama", "--prompt-len", "100000"], "--prompt-len: a 100000-token prompt with --batch 4 "
                                                           "needs about"),
    (["--timeout-s", "0"], "--timeout-s: must be between 1 and 86400 s"),
    (["--timeout-s", "-1"], "--timeout-s: must be between 1 and 86400 s"),
    (["--timeout-s", "nan"], "--timeout-s: must be between 1 and 86400 s"),
    (["--timeout-s", "inf"], "--timeout-s: must be between 1 and 86400 s"),
    (["--timeout-s", "1e18"], "--timeout-s: must be between 1 and 86400 s"),
    (["--job-timeout-s", "nan"], "--job-timeout-s: must be between 1 and 1e+07 s (leave it unset for no limit)"),
])
def test_what_the_runtime_cannot_run_is_refused_before_spawning(capsys, no_spawn, argv, message):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helix run: error: " + message) and err.count("\n") == 1, err


def test_more_ranks_than_the_memory_holds_are_refused(capsys, no_spawn, monkeypatch):
    monkeypatch.setattr(limits, "physical_memory_bytes", lambda: 800_000_000)
    assert main(["run", "--kvp", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helix run: error: --gpus: 4 ranks need about") and "of memory" in err, err
    assert err.count("\n") == 1
