"""`helix reproduce --quick` end to end on the reduced grid (<= 16 GPUs): files, summary.json, report."""

import json
import re

import numpy as np
import pytest

from helix import load_hardware, load_model, search
from helix.cli import main
from helix.experiments import failure_modes
from helix.report import PAPER_CLAIMS

CLAIM_IDS = ["dsr1.max_interactivity_ratio", "dsr1.max_batch_ratio", "dsr1.throughput_ratio",
             "llama405b.max_interactivity_ratio", "llama405b.throughput_ratio", "llama405b.max_batch_ratio",
             "dsr1.hopb_off_interactivity_loss", "llama405b.hopb_off_interactivity_loss",
             "dsr1.hopb_off_interactivity_loss_per_request", "llama405b.hopb_off_interactivity_loss_per_request"]
BUDGET_CLAIMS = ("dsr1.max_batch_ratio", "dsr1.throughput_ratio", "llama405b.throughput_ratio",
                 "llama405b.max_batch_ratio")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    code = main(["reproduce", "--out", str(out), "--quick", "--quiet"])
    assert code == 0
    return out


def test_summary_json_has_exactly_the_claims(results):
    d = json.loads((results / "summary.json").read_text())
    assert set(d) == {"claims", "points_evaluated", "wall_s"}
    assert [c["id"] for c in d["claims"]] == CLAIM_IDS
    papers = {c["id"]: c["paper"] for c in d["claims"]}
    assert papers == {"dsr1.max_interactivity_ratio": 1.5, "dsr1.max_batch_ratio": 32, "dsr1.throughput_ratio": 32,
                      "llama405b.max_interactivity_ratio": 1.13, "llama405b.throughput_ratio": 4,
                      "llama405b.max_batch_ratio": 4, "dsr1.hopb_off_interactivity_loss": 0.01,
                      "llama405b.hopb_off_interactivity_loss": 0.12,
                      "dsr1.hopb_off_interactivity_loss_per_request": 0.01,
                      "llama405b.hopb_off_interactivity_loss_per_request": 0.12}
    base = {"id", "section", "paper", "ours", "unit", "note"}
    for c in d["claims"]:
        assert base <= set(c)
        assert isinstance(c["ours"], float) and np.isfinite(c["ours"]) and c["note"]
        if c["id"] in BUDGET_CLAIMS:
            assert set(c["at_budget_multiple"]) == {"1.1", "1.25", "1.5", "2"}
            p = c["baseline_point"]
            assert {"strategy", "tpa", "kvp", "batch", "users", "ttl_ms"} <= set(p)
            # the maximum over budgets is at least the ratio at any fixed budget multiple
            assert all(v is None or v <= c["ours"] * (1 + 1e-3) for v in c["at_budget_multiple"].values())
    claims = {c["id"]: c for c in d["claims"]}
    assert claims["llama405b.throughput_ratio"]["baseline"] == "tp"
    assert claims["dsr1.throughput_ratio"]["baseline"].startswith("best of")
    assert claims["dsr1.max_interactivity_ratio"]["worded_as"] == "TTL ratio at equal batch"
    assert claims["llama405b.max_interactivity_ratio"]["worded_as"] == "max tokens/s/user ratio"
    assert claims["dsr1.hopb_off_interactivity_loss_per_request"]["per_request_collective_s"] > 0
    assert 0 < d["wall_s"] < 60


def test_readme_claims_table_is_written_from_summary(results):
    from helix.report_claims import claims_table

    d = json.loads((results / "summary.json").read_text())
    assert (results / "claims_table.md").read_text() == claims_table(d) + "\n"


def test_claims_equal_the_search_definitions(results):
    """summary.json's numbers are helix.search's metrics on the same (quick) sweep, not a second formula."""
    d = {c["id"]: c["ours"] for c in json.loads((results / "summary.json").read_text())["claims"]}
    hw = load_hardware("gb200-nvl72")
    sw = search.sweep(load_model("deepseek-r1"), hw, 10**6, max_gpus=16)
    c = search.helix_vs_baseline(sw.points)
    assert d["dsr1.max_interactivity_ratio"] == round(c.equal_batch.max_ratio, 4)  # "TTL at fixed batch sizes"
    assert d["dsr1.throughput_ratio"] == round(c.throughput.max_ratio, 4)
    assert d["dsr1.max_batch_ratio"] == round(c.batch.max_ratio, 4)
    llama = search.sweep(load_model("llama-405b-paper"), hw, 10**6, max_gpus=16, strategies=("tp", "tp_pp", "medha",
                                                                                              "helix"))
    vs_tp = search.helix_vs_baseline(llama.points, baseline=("tp",))  # "vs. TP sharding"
    assert d["llama405b.throughput_ratio"] == round(vs_tp.throughput.max_ratio, 4)
    assert d["llama405b.max_batch_ratio"] == round(vs_tp.batch.max_ratio, 4)
    assert json.loads((results / "summary.json").read_text())["points_evaluated"]["deepseek-r1"] == len(sw.points)


def test_report_has_every_section_and_its_figures(results):
    text = (results / "report.md").read_text()
    for title in ("Fig. 1", "DeepSeek-R1, 1M", "Llama-405B, 1M", "Medha ablation", "HOP-B ablation",
                  "Configuration ranges", "Context scaling", "Batch scaling", "Failure modes", "Sensitivity",
                  "Sensitivity as interactions", "Sparse attention (DeepSeek-V3.2's DSA) as context grows",
                  "Larger scales: beyond one NVLink domain"):
        assert f"## {title}" in text, title
    for cid in CLAIM_IDS:
        assert cid in text
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert len(pngs) >= 14
    for png in pngs:
        assert (results / png).stat().st_size > 5_000, png
    assert "max interactivity ratio   max tokens/s/user of Helix" in text  # definitions quoted from code


def test_fig1_reproduces_appendix_a(results):
    rows = (results / "fig1_tp.csv").read_text().splitlines()[1:]
    kv = [float(r.split(",")[2]) for r in rows]
    assert kv == pytest.approx([1024, 512, 256, 128, 128, 128, 128], rel=1e-9)
    weights = [float(r.split(",")[4]) for r in rows]
    assert weights[0] == pytest.approx(237.0, abs=0.05)  # (2HQHsz + 2HKHsz + 3HF) x 0.5 B / 8 TB/s


def test_kv_hotspot_policies():
    t, kv = failure_modes.kv_hotspots(kvp=4, prefill=1000, steps=640)
    total = 1000 + t
    for v in kv.values():
        assert np.array_equal(v.sum(axis=1), total)  # every token lands on exactly one rank
    rr = kv["round_robin"][-1]
    assert rr.max() - rr.min() <= failure_modes.ROUND_ROBIN_BLOCK
    assert kv["last_rank"][-1].tolist() == [250, 250, 250, 250 + 640]
    assert kv["contiguous"][-1].tolist() == [410, 410, 410, 410]  # M = ceil(1640 / 4)


def test_reproduce_rejects_a_file_as_out(tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("")
    assert main(["reproduce", "--out", str(f), "--quick"]) == 2
    assert "--out" in capsys.readouterr().err


def test_paper_claim_table_is_the_issue_list():
    assert list(PAPER_CLAIMS) == CLAIM_IDS
