"""Layout identity, strategy rules and the rank groups pinned by the docstring's worked examples."""

import pytest

from helix import HelixInputError, Layout, load_model
from helix.layout import check_layout_for_model


def test_worked_example_kvp4_tpa2_then_tpf8():
    lay = Layout.helix(kvp=4, tpa=2)
    assert (lay.tpf, lay.ep, lay.gpus_per_stage) == (8, 1, 8)
    assert lay.tpa_groups() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert lay.kvp_groups() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert lay.attention_groups() == [list(range(8))]
    assert lay.tpf_groups() == [list(range(8))]
    assert lay.attention_coords(5) == (0, 0, 2, 1)


def test_worked_example_tpf4_ep2():
    lay = Layout.helix(kvp=8, tpa=1, tpf=4, ep=2)
    assert lay.tpf_groups() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert lay.ep_groups() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert lay.ffn_coords(6) == (0, 0, 1, 2)


def test_worked_example_tp4_pp2():
    lay = Layout.tp_pp(4, 2)
    assert lay.num_gpus == 8
    assert lay.stage_groups() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert lay.pp_groups() == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_medha_ffn_replicated_per_kvp_group():
    lay = Layout.medha(kvp=4, tp=2)
    assert lay.ffn_replicas == 4 and lay.num_gpus == 8
    assert lay.tpf_groups() == [[0, 1], [2, 3], [4, 5], [6, 7]]  # FFN TP is the attention TP group


def test_identity_violation_names_both_sides():
    with pytest.raises(HelixInputError, match=r"kvp\*tpa\*dp \(=48\) must equal tpf\*ep \(=64\)"):
        Layout(tpa=8, kvp=6, tpf=64)


@pytest.mark.parametrize(("kwargs", "field"), [({"tpa": 0}, "tpa"), ({"kvp": -2}, "kvp"), ({"pp": 1.5}, "pp"),
                                               ({"strategy": "zero"}, "strategy")])
def test_bad_fields(kwargs, field):
    with pytest.raises(HelixInputError) as err:
        Layout(**kwargs)
    assert err.value.field == field


def test_strategy_rules():
    with pytest.raises(HelixInputError, match="tp: attention TP = N"):
        Layout(tpa=2, kvp=2, tpf=4, strategy="tp")
    with pytest.raises(HelixInputError, match="medha: TP is tied"):
        Layout(tpa=2, kvp=2, tpf=1, ep=2, strategy="medha")


def test_model_checks():
    llama = load_model("llama-3.1-405b")
    r1 = load_model("deepseek-r1")
    with pytest.raises(HelixInputError, match="tpa: must divide the KV heads \\(8\\), got 3"):
        check_layout_for_model(Layout.helix(kvp=1, tpa=3), llama)
    with pytest.raises(HelixInputError, match="tpa: helix needs tpa <= KV heads \\(8\\)"):
        check_layout_for_model(Layout.helix(kvp=1, tpa=16), llama)
    with pytest.raises(HelixInputError, match="the attention output width Q\\*v \\(=16384\\) must divide"):
        check_layout_for_model(Layout.helix(kvp=3, tpf=1, ep=3), r1)
    with pytest.raises(HelixInputError, match="ep: must divide the expert count \\(256\\), got 3"):
        check_layout_for_model(Layout(tpa=1, kvp=1, dp=3, tpf=1, ep=3, strategy="dp_ep"), r1)
    with pytest.raises(HelixInputError, match="ep: must be 1 for the dense model"):
        check_layout_for_model(Layout.helix(kvp=2, tpf=1, ep=2), llama)
    check_layout_for_model(Layout.tp(64), llama)  # TP past K is allowed (KV duplicated)
