"""helix.validation.traffic: the runtime's counted bytes beside the simulator's, without torch (records are
plain values, as helix.runtime.comm.CollectiveRecord carries them)."""

from __future__ import annotations

from types import SimpleNamespace

from helix.cost.messages import step_messages
from helix.layout import Layout
from helix.specs.model import ModelSpec
from helix.validation import traffic

# tiny-llama's shape (helix.runtime.registry): 3 layers, H = 72, Q = 8 heads of 10, K = 4, F = 91, V = 211
TINY = ModelSpec(name="tiny-llama", num_layers=3, hidden_dim=72, num_query_heads=8, num_kv_heads=4, head_dim=10,
                 ffn_dim=91, vocab_size=211)
LAYOUT, B = Layout.helix(kvp=2), 2
A2A_BYTES_PER_STEP = 3 * 2 * 8 * 11 * 4  # 3 layers x B x Q/TPA x (Hsz + one fp32 LSE) x 4 bytes


def _records(step: str = "decode0", **override) -> list:
    """One rank's records of a decode step as the formula has them (``override``: phase -> bytes per call)."""
    out = []
    for m in step_messages(TINY, traffic.RUNTIME_PRECISION, "helix", 1, 2, 1, 2, 1, 1, B):
        if int(m.group_size) > 1:
            for _ in range(int(m.calls_per_step)):
                out.append(SimpleNamespace(step=step, phase=m.phase, n_bytes=override.get(m.phase, int(m.n_bytes))))
    return out


def test_equal_records_match_and_the_all_to_all_is_the_hand_count():
    lines, rows, exact = traffic.step_table(TINY, LAYOUT, B, [_records(), _records()])
    a2a = next(r for r in rows if r["phase"] == "kvp_all_to_all")
    assert (a2a["calls"], a2a["bytes"], a2a["simulator_bytes"], a2a["match"]) == (3, A2A_BYTES_PER_STEP,
                                                                                   A2A_BYTES_PER_STEP, "yes")
    assert exact and all(r["match"] == "yes" for r in rows) and len(lines) == 1 + len(rows)


def test_one_rank_off_by_a_byte_is_a_mismatch():
    _, rows, exact = traffic.step_table(TINY, LAYOUT, B, [_records(), _records(kvp_all_to_all=703)])
    assert not exact and next(r for r in rows if r["phase"] == "kvp_all_to_all")["match"] == "NO"


def test_a_phase_the_step_lacks_is_a_mismatch_unless_data_dependent():
    extra = SimpleNamespace(step="decode0", phase="dsa_topk_tie_all_gather", n_bytes=384)
    lines, _, exact = traffic.step_table(TINY, LAYOUT, B, [_records() + [extra]] * 2)
    assert not exact and lines[-1].split() == ["dsa_topk_tie_all_gather", "not", "in", "the", "simulator's", "step",
                                               "NO"]
    lines, _, exact = traffic.step_table(TINY, LAYOUT, B, [_records() + [extra]] * 2,
                                         data_dependent=("dsa_topk_tie_all_gather",))
    assert exact and lines[-1].endswith("n/a (data-dependent)") and " 384 " in lines[-1]


def test_reshard_bytes_against_the_formula():
    # KVP 2 x TPA 2 -> KVP 4 x TPA 1 over 64 cached tokens (61 + 3) in blocks of 16: 3/4 of one copy moves
    arch = SimpleNamespace(num_layers=3, num_kv_heads=4, head_dim=10)
    reshard = SimpleNamespace(at_step=3, layout=lambda old: Layout.helix(kvp=4))
    job = SimpleNamespace(layout=Layout.helix(kvp=2, tpa=2), prompt_ids=SimpleNamespace(shape=(2, 61)),
                          runs=(SimpleNamespace(reshard=reshard, options=SimpleNamespace(block_tokens=16)),))
    one_copy = 64 * 3 * 2 * 4 * 10 * 2 * 4  # tokens x layers x B x K x Hsz x (K and V) x fp32
    assert traffic.reshard_formula_bytes(job, arch) == 0.75 * one_copy
    sent = [one_copy // 8, one_copy // 4, one_copy // 4, one_copy // 8]
    end, ok, fields = traffic.reshard_check(job, arch, sent)
    assert ok and end == f"; helix.cost.reshard: {0.75 * one_copy:,.0f} bytes: match"
    assert fields == {"reshard_bytes_formula": 0.75 * one_copy, "reshard_matches_simulator": True}
    assert traffic.reshard_check(job, arch, [one_copy // 8, one_copy // 4, one_copy // 4, 0])[1] is False
    end, ok, _ = traffic.reshard_check(job, arch, sent[:1])  # torchrun: rank 0's records only
    assert ok and end == " (this rank only; the total needs every rank's records)"


def test_tie_gather_bytes():
    assert traffic.tie_gather_bytes(rows=3, kvp=4, s_loc_max=8) == 4 * 3 * 8 * 4 == 384
