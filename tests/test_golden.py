"""Golden numbers: the headline claims of `helix reproduce` and the per-term breakdown of three fixed
configurations, pinned to tests/golden/headline.json.

The file changes only on purpose, with the reason in the commit message: regenerate it with
``HELIX_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py`` and say in the commit why the numbers
moved. A headline number that moves by more than 1 % fails here.
"""

import json
import os
from pathlib import Path

import pytest

from helix import Layout, load_hardware, load_model, simulate
from helix.experiments.common import DSR1, LLAMA_PAPER_F, Context, model_claims

GOLDEN = Path(__file__).parent / "golden" / "headline.json"
REL = 0.01
CLAIM_FIELDS = ("max_interactivity_ratio", "throughput_ratio", "max_batch_ratio", "hopb_off_interactivity_loss",
                "hopb_off_interactivity_loss_per_request")
# (id, model, hardware, engine, layout, batch, context): one Llama, two DeepSeek (Helix at 1M; "TP8 EP8" at 2K)
CONFIGS = (
    ("llama405b-helix-kvp8-tpa8-1M-B8", LLAMA_PAPER_F, "gb200-nvl72", "trtllm", Layout.helix(kvp=8, tpa=8), 8, 10**6),
    ("dsr1-helix-kvp64-tpf8-ep8-1M-B16", DSR1, "gb200-nvl72", "trtllm", Layout.helix(kvp=64, tpa=1, tpf=8, ep=8),
     16, 10**6),
    ("dsr1-tp8-ep8-h200-sglang-2K-B64", DSR1, "h200", "sglang", Layout.tp(8, ep=8), 64, 2048),
)


def current() -> dict:
    ctx = Context(out=Path("."))
    claims = {}
    for name, cid in ((DSR1, "dsr1"), (LLAMA_PAPER_F, "llama405b")):
        mc = model_claims(ctx, name)
        claims.update({f"{cid}.{f}": float(getattr(mc, f)) for f in CLAIM_FIELDS})
    configs = {}
    for cid, model, hw, engine, layout, batch, context in CONFIGS:
        r = simulate(load_model(model), load_hardware(hw, engine=engine), layout, batch, context)
        configs[cid] = {"ttl_s": float(r.ttl_s), **{k: float(v) for k, v in r.breakdown.items() if float(v) > 0}}
    return {"claims": claims, "configs": configs}


@pytest.fixture(scope="module")
def numbers():
    now = current()
    if os.environ.get("HELIX_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    return now


def _close(got: float, want: float) -> bool:
    # losses can be exactly 0: an absolute floor of 1e-6 (a 0.0001 % loss) keeps 0 vs 1e-16 equal
    return abs(got - want) <= REL * abs(want) + 1e-6


def test_headline_claims_are_the_pinned_ones(numbers):
    want = json.loads(GOLDEN.read_text())["claims"]
    assert set(numbers["claims"]) == set(want)
    moved = {k: (want[k], v) for k, v in numbers["claims"].items() if not _close(v, want[k])}
    assert not moved, f"headline claims moved by more than 1 % (golden, now): {moved}"


@pytest.mark.parametrize("config", [c[0] for c in CONFIGS])
def test_per_term_breakdown_is_the_pinned_one(numbers, config):
    want, got = json.loads(GOLDEN.read_text())["configs"][config], numbers["configs"][config]
    assert set(got) == set(want), config
    moved = {k: (want[k], v) for k, v in got.items() if abs(v - want[k]) > REL * want[k]}
    assert not moved, f"{config}: terms moved by more than 1 % (golden, now): {moved}"


def test_a_moved_number_fails_the_comparison():
    assert _close(1.29, 1.2899) and not _close(1.29, 1.275) and _close(0.0, 3e-16) and not _close(0.0, 0.01)
