"""`helix best` / `helix sweep` budgets: exact GPU counts, the SLA as TTL, TPOT or tokens/s/user, top K, and the
answer at the budget (best Helix vs best baseline and their ratio); bad flags are one line, exit 2."""

import csv
import json

import pytest

from helix import load_hardware, load_model, search
from helix.errors import HelixInputError
from helix.search_budget import Sla, helix_vs_baseline, parse_gpu_counts, top_layouts

BEST = ("best", "--model", "deepseek-r1", "--context", "1M")


def best_json(cli, *argv):
    code, text, err = cli(*BEST, *argv, "--json")
    assert code == 0, err
    return json.loads(text)


def test_total_gpus_is_exact_and_answer_names_both_sides(cli):
    d = best_json(cli, "--total-gpus", "8", "--tpot-ms", "30", "--top", "4")
    picks = [d["most_tokens_per_s_per_gpu"], d["most_users"], *d["top"]]
    assert all(p["num_gpus"] == 8 for p in picks)
    assert d["gpu_counts"] == [8] and d["max_gpus"] == 8
    hb = d["helix_vs_baseline"]
    assert hb["helix"]["layout_fields"]["strategy"] == "helix"
    assert hb["baseline"]["layout_fields"]["strategy"] in ("tp", "tp_pp", "dp_ep", "medha")
    assert hb["helix"]["num_gpus"] == hb["baseline"]["num_gpus"] == 8
    assert hb["tokens_per_s_per_gpu_ratio"] == pytest.approx(
        hb["helix"]["tokens_per_s_per_gpu"] / hb["baseline"]["tokens_per_s_per_gpu"], rel=1e-12)
    assert hb["users_ratio"] == pytest.approx(hb["helix"]["max_users"] / hb["baseline"]["max_users"], rel=1e-12)
    # the same numbers from the library: the best of each side among the 8-GPU points within 30 ms
    sw = search.sweep(load_model("deepseek-r1"), load_hardware("gb200-nvl72"), 10**6, max_gpus=8, gpu_counts=(8,))
    ok = sw.feasible.take(sw.feasible.ttl_s <= 0.030)
    assert set(ok.num_gpus.tolist()) == {8}
    assert hb["helix"]["tokens_per_s_per_gpu"] == pytest.approx(ok.of("helix").tokens_per_s_per_gpu.max(), rel=1e-12)
    base = ok.of("tp", "tp_pp", "dp_ep", "medha")
    assert hb["baseline"]["tokens_per_s_per_gpu"] == pytest.approx(base.tokens_per_s_per_gpu.max(), rel=1e-12)
    # top K: distinct layouts, most tokens/s/GPU first, the first is the headline pick
    top = d["top"]
    assert len(top) == 4 and len({t["layout"] for t in top}) == 4
    assert [t["tokens_per_s_per_gpu"] for t in top] == sorted((t["tokens_per_s_per_gpu"] for t in top), reverse=True)
    assert top[0]["layout"] == d["most_tokens_per_s_per_gpu"]["layout"]
    assert d["most_tokens_per_s_per_gpu"]["layout_fields"] == {
        k: int(v) if v.isdigit() else v for k, v in
        [("strategy", top[0]["layout"].split("(")[0])] + [kv.split("=") for kv in
                                                          top[0]["layout"].split("(")[1].rstrip(")").split(", ")]}


def test_gpu_counts_only_those_counts_never_61(cli):
    d = best_json(cli, "--gpu-counts", "4,8", "--ttl-budget-ms", "30", "--top", "50")
    assert {t["num_gpus"] for t in d["top"]} <= {4, 8}
    assert d["gpu_counts"] == [4, 8]


def test_tpot_is_the_ttl_budget(cli):
    a = best_json(cli, "--total-gpus", "8", "--tpot-ms", "30")
    b = best_json(cli, "--total-gpus", "8", "--ttl-budget-ms", "30")
    for k in ("most_tokens_per_s_per_gpu", "most_users", "helix_vs_baseline"):
        assert a[k] == b[k]
    assert a["ttl_budget_ms"] == b["ttl_budget_ms"] == 30.0 and a["sla"]["flag"] == "--tpot-ms"


def test_min_tokens_per_s_per_user(cli):
    d = best_json(cli, "--total-gpus", "8", "--min-tokens-per-s-per-user", "40", "--top", "3")
    for p in [d["most_tokens_per_s_per_gpu"], d["most_users"], *d["top"]]:
        assert p["tokens_per_s_per_user"] >= 40 and p["num_gpus"] == 8
    assert d["ttl_budget_ms"] is None and d["sla"]["min_tokens_per_s_per_user"] == 40.0
    # without MTP a step is one token: the same points as a budget of 1000 / 40 = 25 ms
    e = best_json(cli, "--total-gpus", "8", "--ttl-budget-ms", "25")
    assert e["most_tokens_per_s_per_gpu"]["layout"] == d["most_tokens_per_s_per_gpu"]["layout"]
    assert e["points_within_budget"] == d["points_within_budget"]


def test_text_answer_names_helix_baseline_and_ratio(cli):
    code, text, _ = cli(*BEST, "--total-gpus", "8", "--tpot-ms", "30", "--top", "2")
    assert code == 0
    assert "TPOT <= 30 ms" in text and "Helix / baseline:" in text and "x tokens/s/GPU" in text
    assert "   1. " in text and "   2. " in text and "   3. " not in text


def test_sweep_gpu_counts_writes_only_those_counts(tmp_path, cli):
    out = tmp_path / "sw"
    code, text, _ = cli("sweep", "--model", "llama-3.1-405b", "--context", "1000", "--gpu-counts", "2,4",
                        "--out", str(out), "--quiet")
    assert code == 0 and ", 2,4 GPUs," in text
    with open(out / "points.csv") as f:
        counts = {int(r["num_gpus"]) for r in csv.DictReader(f)}
    assert counts == {2, 4}


@pytest.mark.parametrize("argv,field", [
    (("--ttl-budget-ms", "20", "--tpot-ms", "20"), "--ttl-budget-ms"),
    (("--tpot-ms", "20", "--min-tokens-per-s-per-user", "50"), "--tpot-ms"),
    ((), "--ttl-budget-ms"),
    (("--tpot-ms", "0"), "--tpot-ms"),
    (("--min-tokens-per-s-per-user", "nan"), "--min-tokens-per-s-per-user"),
    (("--tpot-ms", "20", "--total-gpus", "8", "--gpu-counts", "8,16"), "--total-gpus"),
    (("--tpot-ms", "20", "--gpu-counts", "8,x"), "--gpu-counts"),
    (("--tpot-ms", "20", "--gpu-counts", "0"), "--gpu-counts"),
    (("--tpot-ms", "20", "--total-gpus", "0"), "--total-gpus"),
    (("--tpot-ms", "20", "--gpu-counts", "8,128", "--max-gpus", "64"), "--gpu-counts"),
    (("--tpot-ms", "20", "--top", "0"), "--top"),
])
def test_bad_budget_flags_one_line_exit_2(cli, argv, field):
    code, out, err = cli(*BEST, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"error: {field}" in err and "Traceback" not in err
    if "--tpot-ms" in argv and "--ttl-budget-ms" in argv:
        assert "--tpot-ms" in err.split(field, 1)[1]  # names both


def test_library_pieces():
    assert parse_gpu_counts("64, 8,16,8") == (8, 16, 64)
    with pytest.raises(HelixInputError):
        Sla(ttl_budget_s=0.02, min_tokens_per_s_per_user=50.0)
    sw = search.sweep(load_model("llama-3.1-405b"), load_hardware("gb200-nvl72"), 10**6, max_gpus=4)
    ok = sw.feasible
    idx = top_layouts(ok, 3)
    assert len({ok.describe(i).split(" B=")[0] for i in idx}) == 3
    hb = helix_vs_baseline(ok.of("helix"))
    assert hb["baseline"] is None and hb["tokens_per_s_per_gpu_ratio"] != hb["tokens_per_s_per_gpu_ratio"]  # NaN
