"""What went wrong on which rank: per-rank progress, the one-line failure summary, a test fault hook.

Every worker marks its phase as it goes (``mark``): ``spawn`` (the process started: importing torch,
unpickling the model), ``load`` (joining the process group, sharding the weights), ``prefill``,
``decode step N``, ``report`` (gathering results). Spawned workers write it into a shared array the
launcher reads, so the phase of a rank that was killed or stopped is known too; under torchrun it is
kept in the process. ``WorkerError.summary()`` turns the per-rank failures into one line naming the
rank to blame, its phase and the remedy:

- a rank that died (killed, crashed) is the cause; its peers were stopped;
- a rank that stopped responding while its peers' collectives timed out (``--timeout-s``) is the cause;
- otherwise the first rank that raised something other than a timeout, then the first timeout.

Test hook (tests/runtime/test_failures.py only): ``HELIX_TEST_FAULT=rank:phase:kind`` makes the
worker of ``rank`` (``*``: every rank) act when it reaches ``phase`` (spawn, load, prefill, decode,
decodeN, report): ``kill`` (SIGKILL itself), ``stop`` (SIGSTOP itself), ``raise`` (RuntimeError) or
``sleepS`` (sleep S seconds, at every matching step). Unset, it costs one dict lookup per step.
"""

from __future__ import annotations

import os
import re
import signal
import time

from helix.errors import HelixInputError

PHASES = ("spawn", "load", "prefill", "decode", "report", "done")
FAULT_ENV = "HELIX_TEST_FAULT"
_TIMEOUT = re.compile(r"timed? ?out|timeout|deadline", re.IGNORECASE)
_PEER_LOST = re.compile(r"connection (closed|reset)|broken pipe|remote worker", re.IGNORECASE)


class _Progress:
    """This process's rank and phase; in a spawned worker also written to the launcher's shared array."""

    def __init__(self):
        self.array, self.rank, self.state = None, 0, (0, 0, 0)

    def attach(self, array, rank: int) -> None:
        self.array, self.rank = array, rank

    def mark(self, phase: str, step: int = 0, run: int = 0) -> None:
        self.state = (PHASES.index(phase), step, run)
        if self.array is not None:
            self.array[3 * self.rank:3 * self.rank + 3] = list(self.state)
        _fault(self.rank, phase, step)

    def phase(self) -> str:
        return describe(*self.state)


PROGRESS = _Progress()


def mark(phase: str, step: int = 0, run: int = 0) -> None:
    PROGRESS.mark(phase, step, run)


def describe(code: int, step: int = 0, run: int = 0) -> str:
    name = PHASES[code] if 0 <= code < len(PHASES) else "?"
    text = f"decode step {step}" if name == "decode" else name
    return f"{text} of run {run + 1}" if run else text


def phases_of(array, world_size: int) -> dict[int, str]:
    return {r: describe(*array[3 * r:3 * r + 3]) for r in range(world_size)}


def _fault(rank: int, phase: str, step: int) -> None:
    """The test hook (module docstring); nothing unless HELIX_TEST_FAULT is set."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    who, where, kind = spec.split(":")
    if who not in ("*", str(rank)) or where not in (phase, f"{phase}{step}"):
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif kind == "raise":
        raise RuntimeError(f"{FAULT_ENV}: injected failure in {phase} {step}")
    elif kind.startswith("sleep"):
        time.sleep(float(kind[5:]))


def process_state(pid: int | None) -> str:
    """'stopped', 'running', 'sleeping', ... from /proc (Linux); '' when unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            code = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError, TypeError):
        return ""
    return {"T": "stopped", "t": "stopped", "R": "running", "S": "sleeping", "D": "in uninterruptible I/O",
            "Z": "exited"}.get(code, code)


def exit_reason(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def first_line(message: str, limit: int = 200) -> str:
    line = next((s.strip() for s in message.splitlines() if s.strip()), "")
    line = re.sub(r"^\[[^\]]*\] ", "", line)  # gloo's "[source.cc:81] " prefix
    return line if len(line) <= limit else line[:limit - 3] + "..."


def is_timeout(message: str) -> bool:
    return bool(_TIMEOUT.search(message)) or bool(_PEER_LOST.search(message))


class WorkerError(RuntimeError):
    """Some ranks failed; ``failures[rank] = (error type, field or '', message, traceback)``.

    Error types beyond exception names: ``WorkerDied`` (the process ended without reporting),
    ``Timeout`` (no result: still running when the job was stopped), ``JobTimeout`` (the job deadline).
    ``phases[rank]`` is where each rank was; ``timeout_s`` the collective timeout of the job;
    ``finished`` the ranks that did return a result.
    """

    def __init__(self, failures: dict[int, tuple[str, str, str, str]], phases: dict[int, str] | None = None,
                 timeout_s: float | None = None, finished: tuple[int, ...] = ()):
        self.failures, self.phases, self.timeout_s = failures, phases or {}, timeout_s
        self.finished = tuple(finished)  # ranks that returned a result
        lines = [f"rank {r}: {kind}: {msg}" for r, (kind, _, msg, _) in sorted(failures.items())]
        super().__init__("; ".join(lines))

    def input_error(self):
        """The HelixInputError every failed rank raised, if that is what happened."""
        kinds = {(k, f, m) for k, f, m, _ in self.failures.values()}
        if len(kinds) == 1 and next(iter(kinds))[0] == "HelixInputError":
            _, field_name, message = next(iter(kinds))
            return HelixInputError(field_name, message.split(": ", 1)[-1])
        return None

    def summary(self, timeout_flag: str = "--timeout-s", job_flag: str = "--job-timeout-s") -> str:
        """One line: the rank to blame, its phase, what happened and the remedy."""
        f = self.failures
        at = {r: f" in {self.phases[r]}" if r in self.phases else "" for r in f}
        others = len(f) - 1
        stopped = f"; the other {others} rank{'s were' if others != 1 else ' was'} ended" if others else ""
        wait = f" after {self.timeout_s:g} s ({timeout_flag})" if self.timeout_s else f" ({timeout_flag})"
        kind = {r: v[0] for r, v in f.items()}
        late = [r for r, k in kind.items() if k == "JobTimeout"]
        if late:
            where = ", ".join(f"rank {r}{at[r]}" for r in sorted(late)[:4])
            return (f"job stopped: {f[late[0]][2]}; {where}. Remedy: raise {job_flag}, or leave it unset "
                    "(no limit)")
        died = [r for r, k in kind.items() if k == "WorkerDied"]
        if died:
            r = died[0]
            return (f"rank {r} died{at[r]} ({f[r][2]}){stopped}. Remedy: a rank killed by SIGKILL is often "
                    "the out-of-memory killer (see dmesg): lower --batch, --prompt-len or the rank count; "
                    "otherwise rerun")
        raised = [r for r, k in kind.items() if k != "Timeout" and not is_timeout(f[r][2])]
        if raised:
            r = raised[0]
            return (f"rank {r} failed{at[r]}: {kind[r]}: {first_line(f[r][2])}{stopped}. Remedy: none known "
                    "(a runtime bug or an unsupported setting); rerun with HELIX_TRACEBACK=1 for the traceback")
        silent = [r for r, k in kind.items() if k == "Timeout"]
        if silent and (len(silent) < len(f) or self.finished):  # its peers timed out or finished: the cause
            r = silent[0]
            peers = "the other ranks finished" if self.finished else f"its peers' collectives timed out{wait}"
            return (f"rank {r} stopped responding{at[r]} ({f[r][2]}); {peers}; it was killed. "
                    f"Remedy: if the machine is only overloaded, raise {timeout_flag}; otherwise find what "
                    "stopped or blocked that process")
        r = min(f)
        return (f"rank {r} timed out{at[r]} waiting for a peer{wait}: {first_line(f[r][2])}{stopped}. "
                f"Remedy: raise {timeout_flag} if the ranks are only slow (an overloaded machine)")
