"""Bad input: a clear HelixInputError, raised before spawning and on every rank; nothing hangs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime.comm import Comm
from helix.runtime.launch import Job, RunSpec, WorkerError, prepare, run_job, spawn, validate

PROMPT = torch.zeros(2, 5, dtype=torch.int64)


def _job(kvp: int, tpa: int, model: str = "tiny-llama") -> Job:
    return Job(model, Layout.helix(kvp=kvp, tpa=tpa), PROMPT, (RunSpec(2),), timeout_s=10)


@pytest.fixture(scope="module")
def good_payload():
    payload, _ = prepare(_job(2, 1))
    return payload


def test_tpa_not_dividing_the_kv_heads_is_refused_before_spawning():
    with pytest.raises(HelixInputError, match=r"tpa: must divide the KV heads \(4\), got 3"):
        prepare(_job(1, 3))


def test_unknown_model_is_refused_before_spawning():
    with pytest.raises(HelixInputError, match="unknown runtime model 'gpt-17'; allowed: tiny-llama"):
        prepare(_job(2, 1, "gpt-17"))


def test_world_size_must_match_the_layout():
    with pytest.raises(HelixInputError, match=r"world_size: must equal kvp\*tpa \(=2\).*got 3"):
        validate(_job(2, 1), world_size=3)


def _every_rank_fails(payload, world_size: int, field: str, text: str) -> None:
    with pytest.raises(WorkerError) as info:
        spawn(run_job, world_size, payload, timeout_s=60)
    assert "the job deadline" not in str(info.value)  # every rank's own error, not the launcher's deadline
    failures = info.value.failures
    assert sorted(failures) == list(range(world_size))
    for kind, f, message, _ in failures.values():
        assert (kind, f) == ("HelixInputError", field) and text in message
    assert isinstance(info.value.input_error(), HelixInputError)


@pytest.mark.slow
def test_every_rank_reports_a_world_size_mismatch(good_payload):
    _every_rank_fails(good_payload, 3, "world_size", "must equal kvp*tpa (=2)")


@pytest.mark.slow
def test_every_rank_reports_tpa_not_dividing_the_kv_heads(good_payload):
    bad = dataclasses.replace(good_payload, job=_job(1, 3))
    _every_rank_fails(bad, 3, "tpa", "must divide the KV heads (4), got 3")


@pytest.mark.slow
def test_every_rank_reports_an_unknown_model(good_payload):
    bad = dataclasses.replace(good_payload, job=_job(2, 1, "gpt-17"))
    _every_rank_fails(bad, 2, "--model", "unknown runtime model 'gpt-17'")


def _lonely_rank(rank, world_size, init_method, payload):
    """Rank 0 of a two-rank layout whose peer never comes: setup must time out, not hang."""
    Comm.create(Layout.helix(kvp=2), 0, 2, init_method, timeout_s=2)


@pytest.mark.slow
def test_process_group_setup_times_out_when_a_peer_is_missing():
    with pytest.raises(WorkerError, match="rank 0: .*timeout") as info:
        spawn(_lonely_rank, 1, None, timeout_s=60)
    assert "the job deadline" not in str(info.value)  # the process group's 2 s timeout, not the launcher's
