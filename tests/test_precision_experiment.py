"""The precision section of `helix reproduce`: its variants, its reading of the numerics table, and a quick run."""

import csv
from pathlib import Path

import pytest

from helix.cost.formats import BYTES_PER_ELEMENT
from helix.experiments import precision
from helix.experiments.common import DSR1, Context, model_claims


def test_block_scaled_fp4_bytes():
    # NVFP4: 4 bits + one 8-bit E4M3 scale per 16 = 4.5 bits; MXFP4: 4 bits + one 8-bit E8M0 scale per 32 = 4.25
    assert BYTES_PER_ELEMENT["nvfp4"] == 4.5 / 8 == 0.5625
    assert BYTES_PER_ELEMENT["mxfp4"] == 4.25 / 8 == 0.53125
    assert BYTES_PER_ELEMENT["fp4"] == 0.5


def test_variants_move_one_class_at_a_time_from_fp4():
    v = precision.variants()
    assert len(v) == 5 + 4 * 4  # every class in 5 formats; 4 classes x 4 non-FP4 formats
    assert [(c, f) for c, f, _ in v[:5]] == [("every class", f) for f in ("fp4", "nvfp4", "mxfp4", "fp8", "bf16")]
    comm = next(p for c, f, p in v if c == "communication" and f == "bf16")
    assert (comm.communication, comm.moe_dispatch, comm.moe_combine) == ("bf16", "bf16", "bf16")
    assert comm.kv_cache == comm.ffn_weights == comm.attention_weights == comm.compute == "fp4"
    kv = next(p for c, f, p in v if c == "kv_cache" and f == "nvfp4")
    assert kv.kv_cache == "nvfp4" and kv.communication == "fp4"


def test_most_important_class_by_hand():
    # rows: class, FP8 TTL ×, FP8 tokens/s/GPU ×, BF16 TTL ×, BF16 tokens/s/GPU ×
    rows = [["attention_weights", 1.10, 0.95, 0.97, 1.00], ["ffn_weights", 1.13, 0.87, 1.01, 0.84],
            ["kv_cache", 1.02, 0.58, 1.07, 0.19], ["communication", 1.00, 0.99, 1.02, 0.97]]
    assert precision.most_important(rows, "bf16") == ("kv_cache", "kv_cache")
    assert precision.most_important(rows, "fp8") == ("ffn_weights", "kv_cache")


def test_numerics_headline_reads_the_longest_context(tmp_path):
    rows = []
    for context, scale in ((4000, 100.0), (1_000_000, 1.0)):  # the 4K rows must not be read
        for fmt, base in (("fp32", 1e-6), ("nvfp4", 0.2)):
            for kvp in (1, 64):
                for pf, add in (("fp32", 0.0), ("bf16", 0.002), ("fp8_row", 0.03), ("nvfp4", 0.09)):
                    err = (base + (add if kvp > 1 else 0.0)) * scale
                    rows.append({"context": str(context), "kv_format": fmt, "kvp": str(kvp), "payload_format": pf,
                                 "seeds": "1", "rel_l2_mean": str(err), "rel_l2_worst": str(2 * err),
                                 "max_abs_error": str(err)})
    table, sentence = precision.numerics_headline(rows)
    assert "1,000,000 tokens" in sentence and "0.002 (bf16 payload)" in sentence
    nvfp4_row = next(line for line in table.splitlines() if line.startswith("| nvfp4"))
    # KVP 1: 0.2; KVP 64 with bf16 / fp8_row / nvfp4 payloads: 0.202, 0.23, 0.29; worst head 2 x 0.29 = 0.58
    assert [c.strip() for c in nvfp4_row.strip("|").split("|")] == ["nvfp4", "0.2", "0.202", "0.23", "0.29", "0.58"]


def test_the_committed_numerics_table_is_whole():
    with open(precision.NUMERICS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = {(int(r["context"]), r["kv_format"], int(r["kvp"]), r["payload_format"]) for r in rows}
    assert len(keys) == len(rows) == 3 * 6 * 7 * 4  # contexts x KV formats x KVP x payloads
    assert max(k[0] for k in keys) == 1_000_000


@pytest.fixture(scope="module")
def quick_section(tmp_path_factory):
    ctx = Context(out=Path(tmp_path_factory.mktemp("precision")), quick=True)
    return ctx, precision.run(ctx)


def test_quick_section_writes_every_variant(quick_section):
    ctx, section = quick_section
    with open(ctx.out / "precision_variants.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 21
    assert section.figures == ["precision_frontiers.png"] and (ctx.out / "precision_frontiers.png").exists()
    assert any("huggingface.co/nvidia/DeepSeek-R1-FP4" in b for b in section.body)


def test_fp4_everywhere_row_is_the_headline_sweep(quick_section):
    ctx, _ = quick_section
    with open(ctx.out / "precision_variants.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["model"] == DSR1 and r["class"] == "every class"
                   and r["format"] == "fp4")
    mc = model_claims(ctx, DSR1)
    assert float(row["ttl_ratio_equal_batch"]) == pytest.approx(mc.claims.equal_batch.max_ratio)
    assert float(row["users_ratio"]) == pytest.approx(mc.max_batch_ratio)
