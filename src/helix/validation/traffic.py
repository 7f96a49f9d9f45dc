"""The bytes the runtime counted beside the simulator's formulas: ``helix run``'s traffic check.

The runtime records every collective it issues (helix.runtime.comm: phase, kind, group, bytes per rank
in the simulator's convention) and knows nothing of the simulator; this module sets the two side by side:

- ``step_table``: decode step 0's collectives, phase by phase, against helix.cost.messages.step_messages
  for the runtime model's spec, the job's layout and batch, in fp32 (the runtime computes and sends fp32).
  DP+EP's combine (``ROUTING_DEPENDENT``) sends back what each rank received, which depends on the
  routing: the formula is the mean over the EP group, so it is compared as that mean when every rank's
  records are known (spawned workers), and not compared with rank 0's alone (torchrun). A family's
  data-dependent phases (DSA's tie gather) are shown and never compared; any other phase the step does
  not hold is a mismatch.
- ``reshard_check``: the bytes every rank sent in a live re-shard's all-to-all against
  helix.cost.reshard.reshard_bytes_exact (Llama: K and V fp32, every layer and request);
- ``tie_gather_bytes``: DSA's data-dependent tie gather, which the step does not hold, for the tests.

Torch-free: it reads the records' plain fields and the jobs' numbers.
"""

from __future__ import annotations

from helix.cost.messages import step_messages
from helix.cost.reshard import reshard_bytes_exact
from helix.specs.dsa import INDEX_SCORE_BYTES
from helix.specs.precision import PrecisionSpec

ROUTING_DEPENDENT = ("moe_combine_all_to_all",)
RUNTIME_PRECISION = PrecisionSpec.uniform("fp32")  # the runtime's weights, activations and messages


def per_phase(records, step: str) -> dict[str, tuple[int, int]]:
    """{phase: (calls, bytes)} of one step's records (``CollectiveRecord``: step, phase, n_bytes)."""
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        if r.step == step:
            calls, n = out.get(r.phase, (0, 0))
            out[r.phase] = (calls + 1, n + r.n_bytes)
    return out


def step_table(spec, layout, batch: int, ranks: list, data_dependent=()) -> tuple[list[str], list[dict], bool]:
    """(lines, rows, exact): decode step 0's collectives beside the simulator's; ``ranks``: the traffic
    records (one list per known rank) of one run; ``data_dependent``: phases shown, never compared."""
    expected = {m.phase: m for m in step_messages(spec, RUNTIME_PRECISION, layout.strategy, layout.tpa, layout.kvp,
                                                  layout.dp, layout.tpf, layout.ep, 1, batch)}
    traffic = [per_phase(records, "decode0") for records in ranks]
    every_rank = len(ranks) == layout.num_gpus
    lines = [f"{'collective (decode step 0)':28} {'kind':11} {'group':>5} {'calls':>5} {'bytes/step':>11} "
             f"{'simulator':>11}  match"]
    rows, exact = [], True
    for phase, m in expected.items():
        calls, group = int(m.calls_per_step), int(m.group_size)
        want = int(m.n_bytes * calls) if group > 1 and calls > 0 else 0
        got = [t.get(phase, (0, 0)) for t in traffic]
        if phase in ROUTING_DEPENDENT and want:
            n_calls, n_bytes = got[0][0], sum(n for _, n in got) / len(got)
            if every_rank:
                ok = {c for c, _ in got} == {calls} and n_bytes == want
                verdict, note = ("yes" if ok else "NO"), f" (mean over {len(got)} ranks: routing-dependent)"
            else:  # under torchrun rank 0 sees only its own share
                ok, verdict, note = True, "n/a", " (rank 0 only: routing-dependent, not compared)"
        else:
            ok = all(g == ((calls if want else 0), want) for g in got)
            (n_calls, n_bytes), verdict, note = got[0], ("yes" if ok else "NO"), ""
        exact &= ok
        if want or any(c for c, _ in got):
            n_bytes = int(n_bytes) if float(n_bytes).is_integer() else round(n_bytes, 1)
            lines.append(f"{phase:28} {m.kind:11} {group:5d} {n_calls:5d} {n_bytes:11} {want:11d}  {verdict}{note}")
            rows.append({"phase": phase, "kind": m.kind, "group": group, "calls": n_calls, "bytes": n_bytes,
                         "simulator_bytes": want, "match": verdict})
    unknown = set().union(*traffic) - set(expected)
    for phase in sorted(unknown & set(data_dependent)):
        calls, n_bytes = traffic[0].get(phase, (0, 0))
        lines.append(f"{phase:28} {'all_gather':11} {'':5} {calls:5d} {n_bytes:11} {'':11}  n/a (data-dependent)")
    for phase in sorted(unknown - set(data_dependent)):
        lines.append(f"{phase:28} not in the simulator's step  NO")
    return lines, rows, exact and not unknown - set(data_dependent)


def reshard_formula_bytes(job, arch) -> int:
    """What a Llama job's re-shard (``job.runs[0].reshard``) moves by helix.cost.reshard, summed over ranks."""
    r = job.runs[0].reshard
    old, new = job.layout, r.layout(job.layout)
    batch, prompt = job.prompt_ids.shape
    per_token = arch.num_layers * batch * arch.num_kv_heads * arch.head_dim * 2 * 4  # K and V, fp32
    return int(reshard_bytes_exact(prompt + r.at_step, job.runs[0].options.block_tokens, per_token, old.kvp,
                                   old.tpa, new.kvp, new.tpa, arch.num_kv_heads))


def reshard_check(job, arch, sent: list[int]) -> tuple[str, bool, dict]:
    """(the report line's ending, bytes match, summary fields): ``sent``, the bytes each known rank sent in
    the re-shard (helix.runtime.reshard.sent_bytes), against the formula; one rank's alone is not compared."""
    expected = reshard_formula_bytes(job, arch)
    whole = len(sent) == job.layout.num_gpus
    ok = not whole or sum(sent) == expected
    end = (f"; helix.cost.reshard: {expected:,} bytes: {'match' if ok else 'MISMATCH'}" if whole else
           " (this rank only; the total needs every rank's records)")
    return end, ok, {"reshard_bytes_formula": expected, "reshard_matches_simulator": ok}


def tie_gather_bytes(rows, kvp, s_loc_max, score_bytes=INDEX_SCORE_BYTES):
    """Bytes of one DSA tie gather (one layer), per rank: KVP x rows x max S_loc x 4 (fp32 scores)."""
    return kvp * rows * s_loc_max * score_bytes
