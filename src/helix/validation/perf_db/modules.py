"""The simulator's attention block against aiconfigurator's whole-module measurements: a check of the
composition, with nothing fitted.

Besides the per-kernel tables the op forms are fitted to, aiconfigurator times the complete attention
module forward (``self_attn.forward``: the MLA projections and BMMs, RoPE, the KV-cache write, the
attention kernel, DSA's indexer and top-k, the O-projection; ``collector/{sglang,trtllm}/
collect_mla_module.py``). Summing the simulator's op times over the same ops (the attention group of
the inventory without its two RMSNorms, which sit outside ``self_attn``) and dividing by each measured
row shows what the composition misses: ops the inventory lacks, kernels the engine fuses, paths a
kernel table measures that the module does not take.

    python -m helix.validation.perf_db.modules [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from helix.cost.inventory import layer_ops
from helix.cost.op_timing import time_s
from helix.cost.op_types import Shape
from helix.specs import load_hardware, load_model
from helix.specs.precision import PrecisionSpec
from helix.validation.perf_db.forms import HARDWARE

OUTSIDE_SELF_ATTN = frozenset({"input_norm", "post_attention_norm"})


@dataclass(frozen=True)
class ModuleTable:
    """One module table: where it lives, which model's rows it holds and in which formats."""

    name: str
    family: str
    engine: str
    filename: str
    model: str  # the simulator's preset
    hf_model: str  # the table's `model` column
    kv_cache: str  # the table's kv_cache_dtype; the simulator's format of the same name
    op_name: str | None = None


MODULES = (
    ModuleTable("mla_module", "mla", "sglang", "wideep_generation_mla_perf.parquet", "deepseek-r1",
                "deepseek-ai/DeepSeek-V3", "fp8"),
    ModuleTable("dsa_module", "sparse_attention", "trtllm", "dsa_generation_module_perf.parquet", "deepseek-v3.2",
                "deepseek-ai/DeepSeek-V3.2", "bfloat16", "dsa_generation_module"),
    ModuleTable("dsa_module", "sparse_attention", "sglang", "dsa_generation_module_perf.parquet", "deepseek-v3.2",
                "deepseek-ai/DeepSeek-V3.2", "bfloat16", "dsa_generation_module"),
)
_KV = {"fp8": "fp8", "bfloat16": "bf16"}


def composed_s(hardware: str, table: ModuleTable, heads, batch, kv_tokens) -> np.ndarray:
    """The simulator's seconds for the same block: attention TP = the model's heads / the row's heads
    per rank (q_a / kv_a replicated, q_b / O sharded, as the engines shard them)."""
    model = load_model(table.model)
    hw = load_hardware(hardware, engine=table.engine)
    precision = PrecisionSpec(attention_weights="fp8_block", kv_cache=_KV[table.kv_cache], compute="fp8",
                              attention_compute="bf16")
    tpa = np.maximum(model.num_query_heads // heads, 1).astype(np.int64)
    one = np.ones_like(tpa)
    shape = Shape(model, precision, "tp", tpa, one, one, tpa, one, one, batch, kv_tokens)
    ops = [op for op in layer_ops(shape)["attention"] if op.name not in OUTSIDE_SELF_ATTN]
    return sum(np.broadcast_to(time_s(op, hw), heads.shape) for op in ops)


def compare(hardware: str, table: ModuleTable) -> dict | None:
    from helix.validation.perf_db import tables

    rows = tables.attention_module(HARDWARE[hardware]["system"], table.engine, table.family, table.filename,
                                   table.hf_model, table.kv_cache, table.op_name)
    if rows is None:
        return None
    c = rows.columns
    ratio = composed_s(hardware, table, c["num_heads"], c["batch_size"], c["kv_tokens"]) / rows.seconds
    err = np.abs(ratio - 1.0)
    return {"hardware": hardware, "engine": table.engine, "table": table.name, "path": rows.path,
            "rows": int(ratio.size),
            "median_ratio": round(float(np.median(ratio)), 3), "median_abs_error": round(float(np.median(err)), 3),
            "p90_abs_error": round(float(np.quantile(err, 0.9)), 3)}


def comparisons() -> list[dict]:
    return [c for hw in HARDWARE for t in MODULES if (c := compare(hw, t)) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helix.validation.perf_db.modules",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    try:
        import aiconfigurator_core  # noqa: F401
    except ImportError:
        print("error: needs the perf-db extra: pip install -e \".[perf-db]\"", file=sys.stderr)
        return 2
    found = comparisons()
    if args.json:
        print(json.dumps({"modules": found}))
        return 0
    print("| hardware | engine | table | rows | composed / measured (median) | median |err| | p90 |err| |")
    print("|---|---|---|---|---|---|---|")
    for c in found:
        print(f"| {c['hardware']} | {c['engine']} | {c['table']} | {c['rows']} | {c['median_ratio']:.2f} | "
              f"{100 * c['median_abs_error']:.1f} % | {100 * c['p90_abs_error']:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
