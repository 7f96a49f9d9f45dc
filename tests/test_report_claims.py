"""The README's claim table renders summary.json's claim fields: worded value, 1.25x budget, the other reading."""

from helix.report_claims import claims_table


def test_claims_table_rows_from_summary_fields():
    summary = {"claims": [
        {"id": "llama405b.max_batch_ratio", "paper": 4.0, "ours": 28.0, "unit": "x", "baseline": "tp",
         "at_budget_multiple": {"1.1": 28.0, "1.25": 16.67, "1.5": 10.86, "2": 8.0}, "vs_baseline_union": 3.0},
        {"id": "dsr1.max_interactivity_ratio", "paper": 1.5, "ours": 1.4467, "unit": "x",
         "worded_as": "TTL ratio at equal batch", "at_equal_batch": 1.447, "max_tokens_per_s_per_user_ratio": 1.287},
        {"id": "dsr1.hopb_off_interactivity_loss", "paper": 0.01, "ours": 3.3e-16, "unit": "fraction"},
        {"id": "dsr1.hopb_off_interactivity_loss_per_request", "paper": 0.01, "ours": 0.2525, "unit": "fraction",
         "per_request_collective_s": 1.09e-05},
    ]}
    rows = claims_table(summary).splitlines()
    assert rows[0].startswith("| claim | paper | ours, as the paper words it | at 1.25 ×")
    assert rows[2] == ("| Llama-405B users within a TTL budget, Helix ÷ TP | 4× | 28× | 16.7× | "
                       "vs best of all baselines 3× |")
    assert rows[3].endswith("| 1.5× | 1.45× | – | max tokens/s/user ratio 1.29× |")
    assert "| 1 % | 0 | – |" in rows[4]
    assert rows[5].endswith("| 1 % | 25.2 % | – | each request's all-to-all 10.9 µs |")
