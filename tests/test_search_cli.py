"""`helix sweep` and `helix best`: files, counts, the chosen configurations, and one-line errors (exit 2)."""

import csv
import json

import pytest

from helix import load_hardware, load_model, search, simulate
from helix.layout import Layout


def test_sweep_writes_points_frontier_and_figure(tmp_path, cli):
    out = tmp_path / "sw"
    code, text, _ = cli("sweep", "--model", "llama-3.1-405b", "--context", "1000", "--max-gpus", "4",
                        "--out", str(out), "--quiet")
    assert code == 0
    with open(out / "points.csv") as f:
        rows = list(csv.DictReader(f))
    batches = {r["batch"] for r in rows}
    assert len(rows) == 35 * len(batches)  # 35 layouts worked out in test_search.py
    assert f"{len(rows):,} points evaluated" in text
    feasible = sum(r["feasible"] == "1" for r in rows)
    assert f"{feasible:,} feasible" in text
    with open(out / "frontier.csv") as f:
        front = list(csv.DictReader(f))
    names = {r["frontier"] for r in front}
    assert names == {"tp", "tp_pp", "medha", "helix", "baseline", "global"}
    glob = [r for r in front if r["frontier"] == "global"]
    assert {r["strategy"] for r in glob} <= {"tp", "tp_pp", "medha", "helix"}
    assert (out / "frontier.png").stat().st_size > 10_000


def test_sweep_prints_counts_by_reason(cli):
    code, text, _ = cli("sweep", "--model", "deepseek-r1", "--context", "1000", "--max-gpus", "2",
                        "--quiet")
    assert code == 0
    grid = len(search.batch_grid(int(text.split("batch sizes 1..")[1].split()[0])))
    assert f"{17 * grid:,} points evaluated" in text and "0 feasible" in text
    assert f"weights_exceed_hbm {17 * grid:,}" in text


def test_best_json_picks_within_budget(cli):
    code, text, _ = cli("best", "--model", "llama-3.1-405b", "--context", "1M", "--ttl-budget-ms", "30",
                        "--max-gpus", "16", "--json")
    assert code == 0
    d = json.loads(text)
    thr, users = d["most_tokens_per_s_per_gpu"], d["most_users"]
    for pick in (thr, users):
        assert pick["ttl_s"] <= 0.030 and pick["feasible"] is True
        assert sum(pick["breakdown"].values()) == pytest.approx(pick["ttl_s"], rel=1e-12)
    assert users["users"] >= thr["users"]
    assert thr["tokens_per_s_per_gpu"] >= users["tokens_per_s_per_gpu"]
    # the pick is the best feasible point of the same sweep within the budget
    sw = search.sweep(load_model("llama-3.1-405b"), load_hardware("gb200-nvl72"), 10**6, max_gpus=16)
    ok = sw.feasible.take(sw.feasible.ttl_s <= 0.030)
    assert thr["tokens_per_s_per_gpu"] == pytest.approx(ok.tokens_per_s_per_gpu.max(), rel=1e-12)
    assert users["users"] == ok.users.max()


def test_best_table_has_breakdown(cli):
    code, text, _ = cli("best", "--model", "deepseek-r1", "--ttl-budget-ms", "30", "--max-gpus", "16")
    assert code == 0
    assert text.count("== Most") == 2 and "attention" in text and "TTL" in text


def test_best_matches_simulate(cli):
    code, text, _ = cli("best", "--model", "deepseek-r1", "--ttl-budget-ms", "30", "--max-gpus", "8",
                        "--json")
    d = json.loads(text)["most_users"]
    m, hw = load_model("deepseek-r1"), load_hardware("gb200-nvl72")
    fields = dict(kv.split("=") for kv in d["layout"].split("(")[1].rstrip(")").split(", "))
    layout = Layout(**{k: int(v) for k, v in fields.items()}, strategy=d["layout"].split("(")[0])
    r = simulate(m, hw, layout, d["batch_size"], 10**6)
    assert float(r.ttl_s) == d["ttl_s"]


def test_best_nothing_within_budget_exits_1(cli):
    code, text, _ = cli("best", "--model", "deepseek-r1", "--ttl-budget-ms", "0.5", "--max-gpus", "8")
    assert code == 1 and "no feasible configuration within 0.5 ms" in text


@pytest.mark.parametrize("argv, field", [
    (["sweep", "--model", "nope"], "--model"),
    (["sweep", "--context", "lots"], "--context"),
    (["sweep", "--max-gpus", "0"], "--max-gpus"),
    (["sweep", "--strategies", "tp,foo"], "--strategies"),
    (["sweep", "--hardware", "tpu"], "--hardware"),
    (["best", "--ttl-budget-ms", "0"], "--ttl-budget-ms"),
    (["best", "--ttl-budget-ms", "nan"], "--ttl-budget-ms"),
    (["best", "--ttl-budget-ms", "5", "--context", "-3"], "--context"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, cli, argv, field):
    out = tmp_path / "never"
    extra = ["--out", str(out)] if argv[0] == "sweep" else []
    code, text, err = cli(*argv, *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and field in err
    assert not out.exists()


def test_sweep_out_is_a_file(tmp_path, cli):
    f = tmp_path / "file.txt"
    f.write_text("keep")
    code, _, err = cli("sweep", "--max-gpus", "2", "--out", str(f))
    assert code == 2 and "--out" in err and f.read_text() == "keep"
