"""Read aiconfigurator-core's measured kernel tables (parquet) into numpy rows, one table at a time.

The one module of the perf-DB fit that touches pandas. Layout of the package data:
``systems/data/<system>/<family>/<backend>/<version>/<table>.parquet``.

Version rule: the newest version directory that holds the table, among those not newer than the
engine's ``current`` query slot in ``systems/query_versions.yaml`` (trtllm 1.3.0rc20, sglang 0.5.14 in
aiconfigurator-core 0.12.0): newer directories are partial development drops for single models
(``reuse.yaml`` grafts the rest from ``current``). A table found only in older directories (the MoE
all-to-all tables) comes from the newest of those. NCCL: the newest version with all four ops.
DeepEP low-latency: the version with the most ``node_num`` values, then the newest.

Where one shape has several rows (kernel_source, backend), the fastest is kept: engines autotune or
pick the fastest backend; SGLang's custom all-reduce keeps only its CUDA-graph rows (decode runs
under CUDA graphs). Latencies are converted to seconds (the tables hold milliseconds; the MoE
all-to-all tables microseconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import aiconfigurator_core
import numpy as np
import pandas as pd
import yaml

from helix.validation.perf_db.glitches import GLITCH_FACTOR, without_collective_glitches, without_moe_glitches

PACKAGE_VERSION = "0.12.0"


def installed_version() -> str:
    from importlib.metadata import version

    return version("aiconfigurator-core")
SYSTEMS_DIR = Path(aiconfigurator_core.__file__).resolve().parent / "systems"
DATA_DIR = SYSTEMS_DIR / "data"
GEMM_MAX_TOKENS = 16384  # GEMM rows with m above this are left out (prefill shapes, not decode)
MOE_MIN_TOPK, MOE_MIN_EXPERTS = 4, 64


@dataclass(frozen=True)
class Rows:
    """Selected rows of one table: shape columns (int arrays) and the measured seconds."""

    path: str  # relative to systems/data
    filters: str
    columns: dict
    seconds: np.ndarray


def version_key(version: str) -> tuple:
    """Sortable key: 1.3.0rc20 < 1.3.0rc23 < 1.3.0; 0.5.6.post2 < 0.5.9 < 0.5.14."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?(.*)$", version)
    if not m:
        return (-1, -1, -1, 0, 0, version)
    rest = m.group(4)
    rc = re.search(r"rc(\d+)", rest)
    post = re.search(r"post(\d+)", rest)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), 0 if rc else 1,
            int(rc.group(1)) if rc else 0, int(post.group(1)) if post else 0)


def current_version(backend: str) -> str | None:
    path = SYSTEMS_DIR / "query_versions.yaml"
    if not path.exists():
        return None
    doc = yaml.safe_load(path.read_text()) or {}
    entry = (doc.get("defaults") or {}).get(backend) or {}
    return str(entry["current"]) if entry.get("current") else None


def table_versions(system: str, family: str, backend: str, filename: str) -> list[str]:
    root = DATA_DIR / system / family / backend
    if not root.is_dir():
        return []
    return sorted((d.name for d in root.iterdir() if (d / filename).is_file()), key=version_key)


def newest_version(system: str, family: str, backend: str, filename: str) -> str | None:
    versions = table_versions(system, family, backend, filename)
    current = current_version(backend)
    capped = [v for v in versions if current is None or version_key(v) <= version_key(current)]
    chosen = capped or versions
    return chosen[-1] if chosen else None


def gpus_per_node(system: str) -> int:
    spec = yaml.safe_load((SYSTEMS_DIR / f"{system}.yaml").read_text()) or {}
    return int((spec.get("node") or {}).get("num_gpus_per_node", 8))


def _read(system: str, family: str, backend: str, filename: str, version: str | None = None):
    version = version or newest_version(system, family, backend, filename)
    if version is None:
        return None, ""
    rel = f"{system}/{family}/{backend}/{version}/{filename}"
    return pd.read_parquet(DATA_DIR / rel), rel


def _fastest(df, keys: list[str], unit_s: float, path: str, filters: str, rename: dict | None = None) -> Rows | None:
    df = df[np.isfinite(df["latency"]) & (df["latency"] > 0)]
    if df.empty:
        return None
    best = df.groupby(keys, sort=True)["latency"].min().reset_index()
    columns = {(rename or {}).get(k, k): best[k].to_numpy(dtype=np.int64) for k in keys}
    seconds = best["latency"].to_numpy(dtype=np.float64) * unit_s
    return Rows(path=path, filters=filters, columns=columns, seconds=seconds)


def gemm(system: str, engine: str, dtype: str) -> Rows | None:
    df, rel = _read(system, "gemm", engine, "gemm_perf.parquet")
    if df is None:
        return None
    df = df[(df["gemm_dtype"] == dtype) & (df["m"] <= GEMM_MAX_TOKENS)]
    return _fastest(df, ["m", "n", "k"], 1e-3, rel,
                    f"gemm_dtype == {dtype!r}, m <= {GEMM_MAX_TOKENS}; fastest kernel_source per (m, n, k)")


def attention(system: str, engine: str, kv_dtype: str) -> Rows | None:
    df, rel = _read(system, "attention", engine, "generation_attention_perf.parquet")
    if df is None:
        return None
    df = df[(df["kv_cache_dtype"] == kv_dtype) & (df["head_dim"] == 128) & (df["window_size"] == 0)]
    df = df.assign(kv_tokens=df["isl"] + df["step"])
    return _fastest(df, ["batch_size", "kv_tokens", "num_heads", "num_key_value_heads"], 1e-3, rel,
                    f"kv_cache_dtype == {kv_dtype!r}, head_dim == 128, window_size == 0; kv_tokens = isl + step; "
                    "fastest kernel_source per shape")


def mla(system: str, engine: str, kv_dtype: str) -> Rows | None:
    df, rel = _read(system, "mla", engine, "generation_mla_perf.parquet")
    if df is None:
        return None
    df = df[df["kv_cache_dtype"] == kv_dtype]
    df = df.assign(kv_tokens=df["isl"] + df["step"])
    return _fastest(df, ["batch_size", "kv_tokens", "num_heads"], 1e-3, rel,
                    f"kv_cache_dtype == {kv_dtype!r}; num_heads per rank; kv_tokens = isl + step; fastest per shape")


def mla_bmm(system: str, engine: str, op_name: str, dtype: str) -> Rows | None:
    df, rel = _read(system, "mla_bmm", engine, "mla_bmm_perf.parquet")
    if df is None:
        return None
    df = df[(df["op_name"] == op_name) & (df["bmm_dtype"] == dtype)]
    return _fastest(df, ["num_tokens", "num_heads"], 1e-3, rel,
                    f"op_name == {op_name!r}, bmm_dtype == {dtype!r}; fastest kernel_source per shape")


def moe(system: str, engine: str, dtype: str, routing: str) -> Rows | None:
    df, rel = _read(system, "moe", engine, "moe_perf.parquet")
    if df is None:
        return None
    # fine-grained MoE only: the simulator's MoE models route top-8 of 256; coarse top-1/2 of 8-16 experts
    # (Mixtral-style) run other kernels and would pull the shared correction away from them
    df = df[(df["moe_dtype"] == dtype) & (df["distribution"] == routing)
            & ~df["kernel_source"].str.endswith("_nongated") & (df["topk"] >= MOE_MIN_TOPK)
            & (df["num_experts"] >= MOE_MIN_EXPERTS)]
    keys = ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size"]
    rows = _fastest(df, keys, 1e-3, rel,
                    f"moe_dtype == {dtype!r}, distribution == {routing!r}, gated (kernel_source not *_nongated), "
                    f"topk >= {MOE_MIN_TOPK}, num_experts >= {MOE_MIN_EXPERTS}; num_tokens = tokens entering the "
                    f"layer on one rank; fastest kernel_source per shape; without glitches (a row over "
                    f"{2 * GLITCH_FACTOR:g}x slower than the same shape at twice the TP or the EP)")
    return None if rows is None else without_moe_glitches(rows)


def moe_deepep(system: str, engine: str, dtype: str, routing: str) -> Rows | None:
    """SGLang's DeepEP MoE (kernel deepepmoe, the DP-attention + EP path): num_tokens counts the tokens of
    every EP rank together (each rank holds num_tokens / EP and receives its experts' pairs), the same
    convention as the simulator's feature. TRT-LLM's wide-EP table holds skewed (power-law) routing
    only, so TRT-LLM keeps its regular MoE table."""
    if engine != "sglang":
        return None
    df, rel = _read(system, "moe", engine, "wideep_generation_moe_perf.parquet")
    if df is None:
        return None
    df = df[(df["moe_dtype"] == dtype) & (df["distribution"] == routing) & (df["kernel_source"] == "deepepmoe")]
    keys = ["num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size"]
    return _fastest(df, keys, 1e-3, rel,
                    f"moe_dtype == {dtype!r}, distribution == {routing!r}, kernel_source == 'deepepmoe'; "
                    "num_tokens = tokens of all EP ranks together")



def attention_module(system: str, engine: str, family: str, filename: str, hf_model: str, kv_dtype: str,
                     op_name: str | None) -> Rows | None:
    """A whole-attention-module table (self_attn.forward: projections, attention, DSA indexer, O-projection),
    FP8-block GEMMs; fastest per (heads per rank, batch, KV tokens). Read by perf_db.modules, not fitted."""
    df, rel = _read(system, family, engine, filename)
    if df is None:
        return None
    keep = (df["model"] == hf_model) & (df["gemm_type"] == "fp8_block") & (df["kv_cache_dtype"] == kv_dtype)
    if op_name is not None:
        keep &= df["op_name"] == op_name
    df = df[keep].assign(kv_tokens=df["isl"] + df["step"])
    return _fastest(df, ["num_heads", "batch_size", "kv_tokens"], 1e-3, rel,
                    f"model == {hf_model!r}, gemm_type == 'fp8_block', kv_cache_dtype == {kv_dtype!r}"
                    + (f", op_name == {op_name!r}" if op_name else "") + "; kv_tokens = isl + step; fastest per shape")

# The elementwise form of both engines comes from TensorRT-LLM's quantisation table. Its rows time one
# fused CUDA kernel (torch.ops.tensorrt_llm.static_quantize_e4m3_per_tensor; aiconfigurator
# collector/trtllm/collect_computescale.py), as every elementwise op of the inventory is (norms, RoPE, KV
# write, SwiGLU, top-k gating, LSE combine, sampling): both engines run each as a single fused kernel
# (sgl_kernel fused_add_rmsnorm, silu_and_mul, ...). SGLang's table of the same name times an eager PyTorch expression,
# out.copy_((x / scale).clamp(...).to(float8)) (collector/sglang/collect_computescale.py, sglang 0.5.14):
# four kernels through BF16 temporaries, 5.3-5.8 us at the smallest shapes where the fused kernel takes
# 1.1-1.3 us, and 9x slower at 32768 x 16384 (4.8 ms against 0.53 ms on H100), a kernel no decode step runs.
ELEMENTWISE_ENGINE = "trtllm"


def elementwise(system: str, engine: str) -> Rows | None:
    df, rel = _read(system, "quantize", ELEMENTWISE_ENGINE, "scale_matrix_perf.parquet")
    if df is None:
        return None
    return _fastest(df, ["m", "k"], 1e-3, rel,
                    "activation quantisation BF16 -> FP8 of an m x k matrix, one fused kernel "
                    f"({ELEMENTWISE_ENGINE}'s table for every engine); fastest per shape")


def nccl(system: str, op_name: str) -> Rows | None:
    versions = [v for v in table_versions(system, "comm", "nccl", "nccl_perf.parquet")
                if {"all_gather", "all_reduce", "alltoall", "reduce_scatter"}
                <= set(pd.read_parquet(DATA_DIR / system / "comm" / "nccl" / v / "nccl_perf.parquet",
                                       columns=["op_name"])["op_name"])]
    if not versions:
        return None
    df, rel = _read(system, "comm", "nccl", "nccl_perf.parquet", versions[-1])
    df = df[(df["op_name"] == op_name) & (df["nccl_dtype"] == "half")]
    df = df.assign(n_bytes=df["message_size"] * 2)  # message_size counts elements (nccl-tests bytes / 2 for half)
    return _fastest(df, ["num_gpus", "n_bytes"], 1e-3, rel,
                    f"op_name == {op_name!r}, nccl_dtype == 'half'; bytes = 2 x message_size (elements)",
                    rename={"num_gpus": "group"})


def custom_all_reduce(system: str, engine: str) -> Rows | None:
    df, rel = _read(system, "comm", engine, "custom_allreduce_perf.parquet")
    if df is None:
        return None
    note = "bfloat16"
    if engine == "sglang":
        df = df[df["kernel_source"].str.endswith("_graph")]
        note = "CUDA-graph rows (kernel_source *_graph), bfloat16"
    df = df[df["allreduce_dtype"] == "bfloat16"]
    df = df.assign(n_bytes=df["message_size"] * 2)  # message_size counts BF16 elements
    return _fastest(df, ["num_gpus", "n_bytes"], 1e-3, rel, f"{note}; bytes = 2 x message_size (elements)",
                    rename={"num_gpus": "group"})


def _payload_bytes(hidden, dtype: str):
    """Bytes per (token, selected expert) row: BF16 2 h; FP8 h + h/128 x 4 (fp32 scale per 128)."""
    return 2.0 * hidden if dtype == "bfloat16" else hidden + hidden / 128.0 * 4.0


def moe_all_to_all(system: str, engine: str, phase: str) -> Rows | None:
    """Dispatch (FP8 payload) or combine (BF16) of the low-latency DeepEP kernels; n = tokens x topk x payload."""
    dtype = "fp8" if phase == "dispatch" else "bfloat16"
    if engine == "sglang":
        versions = table_versions(system, "comm", "sglang", "wideep_deepep_ll_perf.parquet")
        if not versions:
            return None
        spread = {v: pd.read_parquet(DATA_DIR / system / "comm" / "sglang" / v / "wideep_deepep_ll_perf.parquet",
                                     columns=["node_num"])["node_num"].nunique() for v in versions}
        version = max(versions, key=lambda v: (spread[v], version_key(v)))
        df, rel = _read(system, "comm", "sglang", "wideep_deepep_ll_perf.parquet", version)
        df = df.assign(group=df["node_num"] * gpus_per_node(system), latency=df[f"{phase}_avg_t_us"],
                       topk=df["num_topk"], tokens=df["num_token"], experts=df["num_experts"])
        what = f"DeepEP low-latency {phase} ({phase}_avg_t_us), EP = node_num x {gpus_per_node(system)}"
    else:
        df, rel = _read(system, "comm", "trtllm", "moe_a2a_perf.parquet")
        if df is None:
            return None
        df = df[(df["comm_backend"] == "trtllm_deepep_ll") & (df["phase"] == phase) & (df["comm_dtype"] == dtype)]
        df = df.assign(group=df["ep_size"], tokens=df["num_tokens"], experts=df["num_experts"])
        what = f"comm_backend == 'trtllm_deepep_ll', phase == {phase!r}, comm_dtype == {dtype!r}, EP = ep_size"
    # fine-grained routing only, as for the MoE tables (top-1/2 rows run DeepEP with other buffer layouts)
    df = df[df["topk"] >= MOE_MIN_TOPK]
    payload = df["tokens"] * df["topk"] * _payload_bytes(df["hidden_size"], dtype)
    df = df.assign(n_bytes=np.round(payload).astype(np.int64))
    rows = _fastest(df, ["group", "n_bytes", "tokens", "topk", "hidden_size", "experts"], 1e-6, rel,
                    f"{what}; topk >= {MOE_MIN_TOPK}; tokens per rank; bytes = tokens x topk x "
                    f"{'(h + h/128 x 4)' if dtype == 'fp8' else '2 h'}; without glitches (a row over "
                    f"{GLITCH_FACTOR:g}x slower than one of its group moving at least as many bytes)")
    return None if rows is None else without_collective_glitches(rows)
