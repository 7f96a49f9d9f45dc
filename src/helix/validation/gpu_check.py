"""Single-GPU calibration and op validation: ``python -m helix.validation.gpu_check --out DIR``.

One short script for a lent H100/H200 (budget: well under 4 minutes, no network, no collectives):

1. calibrate: HBM streaming read (``tensor.sum()`` of 1-4 GB), bf16 matmul FLOP/s (and FP8 through
   ``torch._scaled_mm`` where the GPU has it), per-kernel overhead (eager back-to-back, and inside a
   CUDA graph); writes ``DIR/profile-<device>.yaml`` (measured ceilings, efficiencies 1; the fields
   not measured here, links and collective latencies, copied from the preset with their sources);
2. validate single-GPU decode ops against ``helix.cost.ops.op_time_s`` under both the preset
   (``h100`` / ``h200``) and the measured profile:
   - GQA attention (Llama-405B: Q = 128, K = 8, Hsz = 128, bf16 KV) per GPU at TPA = 1 and 8: the
     g = Q/K query heads of a KV head laid out as the query-length axis of PyTorch's flash kernel,
     the sequence split into shards (flash decoding) so that small batches fill the GPU, the
     shards' partial outputs merged by their LSE (the Helix combine, on one GPU);
   - MLA attention (DeepSeek-R1 absorbed: 128 heads against a 576-wide latent cache), the same way
     as MQA through the memory-efficient kernel (flash takes heads <= 256 wide) with V = the latent
     (576 wide; FlashMLA stops at 512), falling back to two GEMMs + softmax where it is refused;
   - decode GEMMs: weight-read-bound per-GPU shards of Llama-405B (TP = 8) and DeepSeek-R1 at B = 1..64.
   Bytes and FLOPs come from the simulator's own spec formulas (helix.specs, helix.cost.memory).
   Each point: CUDA events around ``inner`` back-to-back calls, median of repetitions after warm-up,
   operands rotated over copies larger than L2 so that every call reads HBM.
3. writes ``DIR/gpu_validation.csv`` and ``DIR/gpu_validation.md`` (device, date, error per point).

``--cpu-smoke`` runs the same pipeline with tiny sizes on the CPU (perf_counter timing) to test the
script without a GPU: its numbers validate nothing.
"""

# ruff: noqa: N803, N806, N812 - shapes use the paper's symbols (B, S, Q, K, Hsz), as in helix.cost

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from helix.cost import memory
from helix.cost.ops import op_time_s
from helix.specs.hardware import hardware_from_mapping, load_hardware
from helix.specs.model import load_model
from helix.specs.precision import PrecisionSpec
from helix.validation import fit

BF16 = PrecisionSpec.uniform("bf16")


# ---------------------------------------------------------------- timing


@dataclass
class Timer:
    device: str  # "cuda" or "cpu"
    graphs: bool = False  # CUDA: replay ``inner`` calls captured in one CUDA graph (as a serving engine does)
    graph_failures: int = 0
    last_eager_s: float = 0.0  # with graphs: the same call timed eagerly, launch by launch

    def _graphed(self, fn, inner: int):
        """One CUDA graph holding ``inner`` calls of fn; falls back to eager calls if capture fails."""
        import torch

        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                fn()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(inner):
                    fn()
            return graph.replay
        except Exception as exc:  # noqa: BLE001 - an op that cannot be captured: time it eagerly
            self.graph_failures += 1
            print(f"graph capture failed ({type(exc).__name__}: {str(exc)[:100]}); eager", file=sys.stderr)

            def eager():
                for _ in range(inner):
                    fn()

            return eager

    def time_s(self, fn, *, repeats: int = 10, warmup: int = 3, inner: int = 1) -> float:
        """Median seconds per call over ``repeats`` samples of ``inner`` back-to-back calls."""
        import torch

        for _ in range(warmup):
            fn()
        samples = []
        per_replay = 1
        self.last_eager_s = 0.0
        if self.device == "cuda" and self.graphs:
            self.last_eager_s = Timer(self.device).time_s(fn, repeats=repeats, warmup=0, inner=inner)
            fn, per_replay, inner = self._graphed(fn, inner), inner, 1
        if self.device == "cuda":
            torch.cuda.synchronize()
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(inner):
                    fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3 / inner / per_replay)
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                samples.append((time.perf_counter() - t0) / inner)
        return fit.robust_median_s(samples)


def _rotating(fn, operand_sets):
    """A no-argument call of ``fn`` cycling over operand tuples (each call reads a different copy)."""
    state = {"i": 0}

    def call():
        args = operand_sets[state["i"] % len(operand_sets)]
        state["i"] += 1
        return fn(*args)

    return call


def _copies(nbytes: float, flush_bytes: float) -> int:
    """Operand copies to rotate so that consecutive calls never hit a warm L2."""
    return int(min(8, max(1, math.ceil(flush_bytes / max(nbytes, 1)))))


# ---------------------------------------------------------------- calibration


def calibrate_device(timer: Timer, smoke: bool) -> dict[str, float]:
    import torch

    dev = timer.device
    out: dict[str, float] = {}
    sizes = (8 << 20,) if smoke else (1 << 30, 4 << 30)
    rates = []
    for n in sizes:
        rates.append(n / timer.time_s(_rotating(torch.sum, [(torch.ones(n // 4, device=dev),)]),
                                      repeats=5 if smoke else 10))
    out["stream_read_bytes_per_s"] = max(rates)
    m = 256 if smoke else 8192
    a = torch.randn(m, m, device=dev).to(torch.bfloat16)
    b = torch.randn(m, m, device=dev).to(torch.bfloat16)
    out["bf16_matmul_flops_per_s"] = 2 * m**3 / timer.time_s(_rotating(torch.matmul, [(a, b)]),
                                                              repeats=5 if smoke else 10)
    out["bf16_matmul_size"] = m
    if dev == "cuda" and hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm"):
        try:
            a8 = a.to(torch.float8_e4m3fn)
            b8 = b.t().contiguous().to(torch.float8_e4m3fn).t()  # column-major second operand
            one = torch.ones((), device=dev)

            def mm8():
                return torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

            out["fp8_matmul_flops_per_s"] = 2 * m**3 / timer.time_s(mm8, repeats=10)
        except Exception as exc:  # noqa: BLE001 - an older GPU or torch without FP8 GEMM
            print(f"fp8 matmul skipped: {exc}", file=sys.stderr)
    del a, b
    tiny_a, tiny_b = torch.ones(1, device=dev), torch.ones(1, device=dev)
    out["eager_kernel_s"] = timer.time_s(lambda: torch.add(tiny_a, tiny_b), repeats=5, inner=1000)
    if dev == "cuda":
        graph = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.add(tiny_a, tiny_b)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(graph):
            for _ in range(200):
                torch.add(tiny_a, tiny_b)
        out["graph_kernel_s"] = timer.time_s(graph.replay, repeats=5, inner=5) / 200
    return out


def profile_mapping(cal: dict[str, float], preset_name: str, device_name: str, capacity_bytes: float) -> dict:
    """Preset fields with the measured ceilings swapped in (efficiencies 1: the values are achieved)."""
    import yaml

    from helix.specs.hardware import PRESET_DIR

    preset = yaml.safe_load((PRESET_DIR / f"{preset_name}.yaml").read_text())
    date = time.strftime("%Y-%m-%d")
    how = f"MEASURED by helix.validation.gpu_check on {device_name}, {date}"

    def e(value, source):
        return {"value": float(f"{value:.4g}"), "source": f"{how}: {source}", "empirical": True}

    prof = dict(preset)
    prof["name"] = f"{preset_name}-measured"
    prof["description"] = f"{device_name}: measured single-GPU ceilings ({date}); links and latencies from " \
                          f"preset {preset_name!r}"
    prof["peak_flops_per_s_bf16"] = e(cal["bf16_matmul_flops_per_s"],
                                      f"bf16 {cal['bf16_matmul_size']:.0f}^3 matmul, CUDA events, median")
    if "fp8_matmul_flops_per_s" in cal:
        prof["peak_flops_per_s_fp8"] = e(cal["fp8_matmul_flops_per_s"], "fp8 e4m3 torch._scaled_mm, same size")
    prof["hbm_bytes_per_s"] = e(cal["stream_read_bytes_per_s"], "fp32 tensor.sum() over 1 and 4 GB, best")
    prof["hbm_capacity_bytes"] = e(capacity_bytes, "torch.cuda.get_device_properties().total_memory")
    prof["hbm_efficiency"] = e(1.0, "hbm_bytes_per_s already holds the achieved streaming rate")
    prof["flop_efficiency"] = e(1.0, "the peak slots already hold achieved GEMM rates")
    kernel = cal.get("graph_kernel_s", cal["eager_kernel_s"])
    prof["kernel_launch_s"] = e(kernel, f"1-element add inside a CUDA graph, per kernel (eager back-to-back: "
                                        f"{cal['eager_kernel_s'] * 1e6:.2f} us)")
    return prof


# ---------------------------------------------------------------- validation points


@dataclass
class Point:
    op: str
    shape: str
    bytes_read: float
    flops: float
    measured_s: float
    note: str = ""
    eager_s: float = 0.0


# ---- attention kernels: split-KV ("flash decoding") partials merged by LSE, the Helix combine in miniature


def _partial_attention(q, k, v, kernel: str):
    """(out [B, H, L, Dv], natural-log LSE [B, H, L] fp32) of q [B, H, L, D] against k, v [B, H, S, D*]."""
    import torch

    scale = 1.0 / math.sqrt(q.shape[-1])
    if kernel == "flash":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, scale=scale)[:2]
        return out, lse
    if kernel == "efficient":
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, scale=scale)[:2]
        return out, lse[..., : q.shape[2]]
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # "math": [B, H, L, S]
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse[..., None]).to(v.dtype), v), lse


def split_kv_decode(q, k, v, chunks: int, kernel: str):
    """Decode attention of q [B, Hk, g, D] against k, v [B, Hk, S, D*], S cut into ``chunks`` shards.

    Each shard gives a partial output and its LSE; the shards are merged exactly (rescale by
    exp(LSE_i - max), normalise): the same merge Helix does across KVP ranks.
    """
    B, Hk, g, D = q.shape
    S = k.shape[2]
    c = chunks
    qs = q[:, :, None].expand(B, Hk, c, g, D).reshape(B, Hk * c, g, D)
    ks = k.reshape(B, Hk * c, S // c, k.shape[-1])
    vs = v.reshape(B, Hk * c, S // c, v.shape[-1]) if v.data_ptr() != k.data_ptr() else ks
    out, lse = _partial_attention(qs, ks, vs, kernel)
    out, lse = out.view(B, Hk, c, g, -1).float(), lse.view(B, Hk, c, g)
    w = (lse - lse.amax(dim=2, keepdim=True)).exp()  # [B, Hk, c, g]
    return ((w[..., None] * out).sum(2) / w.sum(2)[..., None]).to(q.dtype)  # [B, Hk, g, Dv]


def _chunks(parallel: int, S: int, sms: int) -> int:
    """Shards of S so that parallel x shards >= 2 waves of SMs, each shard >= 512 tokens (S a power of 2)."""
    c = 1
    while parallel * c < 2 * sms and S // (2 * c) >= 512 and S % (2 * c) == 0:
        c *= 2
    return c


def _kernel_for(dev: str, preferred: str) -> str:
    return preferred if dev == "cuda" else "math"


def gqa_points(timer: Timer, smoke: bool, budget_bytes: float, sms: int) -> list[Point]:
    import torch

    model = load_model("llama-3.1-405b")
    Q, K, Hsz = model.num_query_heads, model.num_kv_heads, model.head_dim
    dev, pts = timer.device, []
    grid = [(8, 1, 1024), (8, 4, 2048)] if smoke else [
        (tpa, b, s) for tpa in (8, 1) for b in (1, 8, 32) for s in (4096, 32768, 262144, 1048576)]
    kernel = _kernel_for(dev, "flash")
    for tpa, B, S in grid:
        Qh, Kh = (Q // tpa, K // tpa) if not smoke else (4, 1)
        hs = Hsz if not smoke else 32
        kv_bytes = B * S * Kh * 2 * hs * 2
        if kv_bytes > budget_bytes:
            continue
        g = Qh // Kh
        c = _chunks(B * Kh, S, sms)
        copies = _copies(kv_bytes, 200e6 if dev == "cuda" else 0)
        q = torch.randn(B, Kh, g, hs, device=dev, dtype=torch.bfloat16)  # q: [B, K/TPA, g, Hsz]
        kv = [(q, torch.randn(B, Kh, S, hs, device=dev, dtype=torch.bfloat16),  # k, v: [B, K/TPA, S, Hsz]
               torch.randn(B, Kh, S, hs, device=dev, dtype=torch.bfloat16), c, kernel) for _ in range(copies)]
        t = timer.time_s(_rotating(split_kv_decode, kv), repeats=10 if not smoke else 3, inner=copies)
        kv = None
        kv_tok = float(memory.kv_bytes_per_token_per_layer_per_gpu(model, BF16, tpa)) if not smoke else Kh * 2 * hs * 2
        flops_tok = Qh * (model.attention_flops_per_cached_token_per_head if not smoke else 4 * hs)
        pts.append(Point("gqa_attention", f"TPA={tpa} Q/TPA={Qh} K/TPA={Kh} B={B} S={S}",
                         B * S * kv_tok, B * S * flops_tok, t, f"{kernel} split-KV x{c} + LSE merge",
                         timer.last_eager_s))
    return pts


def mla_points(timer: Timer, smoke: bool, budget_bytes: float, sms: int) -> list[Point]:
    """MLA absorbed decode as MQA: 128 query heads on the "length" axis against one 576-wide latent head."""
    import torch

    model = load_model("deepseek-r1")
    Qh, dc, dr = model.num_query_heads, model.kv_lora_rank, model.qk_rope_head_dim
    if smoke:
        Qh, dc, dr = 8, 32, 8
    width = dc + dr
    dev, pts = timer.device, []
    grid = [(1, 1024), (4, 2048)] if smoke else [(b, s) for b in (1, 8, 32) for s in (4096, 32768, 131072, 524288)]
    for B, S in grid:
        cache_bytes = B * S * width * 2
        if cache_bytes * 1.2 > budget_bytes:
            continue
        c = _chunks(B * 2, S, sms)  # ~2 tiles of 64 query heads per shard
        copies = _copies(cache_bytes, 200e6 if dev == "cuda" else 0)
        q = torch.randn(B, 1, Qh, width, device=dev, dtype=torch.bfloat16)  # q: [B, 1, Q, d_c + d_rope]
        caches = [torch.randn(B, 1, S, width, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
        # The values are the latent itself (V = c, 576 wide; a fused MLA kernel stops at d_c = 512).
        kernel = None
        for candidate in ((_kernel_for(dev, "efficient"), "math") if dev == "cuda" else ("math",)):
            try:
                split_kv_decode(q, caches[0], caches[0], c, candidate)
                kernel = candidate
                break
            except Exception as exc:  # noqa: BLE001 - a kernel that does not take 576-wide heads
                print(f"mla: kernel {candidate} unavailable: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
        if kernel is None:
            continue
        t = timer.time_s(_rotating(split_kv_decode, [(q, x, x, c, kernel) for x in caches]),
                         repeats=10 if not smoke else 3, inner=copies)
        caches = None
        kv_tok = float(memory.kv_bytes_per_token_per_layer_per_gpu(model, BF16, 1)) if not smoke else width * 2
        flops_tok = Qh * (model.attention_flops_per_cached_token_per_head if not smoke else 4 * dc + 2 * dr)
        pts.append(Point("mla_attention", f"Q={Qh} latent={width} B={B} S={S}", B * S * kv_tok, B * S * flops_tok,
                         t, f"{kernel} split-KV x{c} + LSE merge, V = latent", timer.last_eager_s))
    return pts


def gemm_shapes(smoke: bool) -> list[tuple[str, int, int]]:
    """(name, K in, N out) of per-GPU decode GEMM shards."""
    if smoke:
        return [("tiny-proj", 256, 512)]
    llama, ds = load_model("llama-3.1-405b"), load_model("deepseek-r1")
    H, tp = llama.hidden_dim, 8
    qkv_n = int(memory.qkv_weight_elements(llama, tp)) // H
    d = ds.hidden_dim
    return [
        ("llama405b-qkv TP8", H, qkv_n),
        ("llama405b-o TP8", llama.num_query_heads * llama.head_dim // tp, H),
        ("llama405b-ffn-up+gate TP8", H, 2 * llama.ffn_dim // tp),
        ("llama405b-ffn-down TP8", llama.ffn_dim // tp, H),
        ("r1-q-up (W_UQ)", ds.q_lora_rank, ds.num_query_heads * (ds.qk_nope_head_dim + ds.qk_rope_head_dim)),
        ("r1-expert-up+gate", d, 2 * ds.expert_ffn_dim),
        ("r1-expert-down", ds.expert_ffn_dim, d),
        ("r1-dense-ffn-up+gate TP8", d, 2 * ds.ffn_dim // tp),
        ("r1-lm-head TP8", d, 129280 // tp),
    ]


def gemm_points(timer: Timer, smoke: bool) -> list[Point]:
    import torch

    dev, pts = timer.device, []
    for name, k, n in gemm_shapes(smoke):
        w_bytes = k * n * 2
        copies = _copies(w_bytes, 200e6 if dev == "cuda" else 0)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
        for B in ((1, 4) if smoke else (1, 8, 64)):
            x = torch.randn(B, k, device=dev, dtype=torch.bfloat16)
            t = timer.time_s(_rotating(torch.nn.functional.linear, [(x, w) for w in ws]),
                             repeats=10 if not smoke else 3, inner=copies)
            pts.append(Point("decode_gemm", f"{name} B={B} K={k} N={n}", w_bytes + 2 * B * (k + n),
                             2.0 * B * k * n, t, "F.linear, bf16", timer.last_eager_s))
        ws = None
    return pts


# ---------------------------------------------------------------- outputs


def predictions(points: list[Point], profiles: dict) -> list[dict]:
    rows = []
    for p in points:
        row = {"op": p.op, "shape": p.shape, "bytes_read": p.bytes_read, "flops": p.flops,
               "measured_us": p.measured_s * 1e6, "eager_us": p.eager_s * 1e6,
               "achieved_GBps": p.bytes_read / p.measured_s / 1e9}
        for label, hw in profiles.items():
            pred = float(op_time_s(p.bytes_read, p.flops, hw, "bf16"))
            row[f"pred_{label}_us"] = pred * 1e6
            row[f"err_{label}"] = float(fit.relative_errors(pred, p.measured_s))
        row["note"] = p.note
        rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    cols = list(rows[0])
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else f'"{v}"' if "," in str(v) else str(v)
                              for v in r.values()))
    path.write_text("\n".join(lines) + "\n")


def write_markdown(rows: list[dict], cal: dict, labels: list[str], header: str, path: Path) -> None:
    lines = [header, "", "## Calibration", "", "| quantity | measured |", "|---|---|"]
    for k, v in cal.items():
        lines.append(f"| {k} | {v:.4g} |")
    lines += ["", "## Error summary (predicted − measured) / measured", "",
              "| op | profile | points | median abs | worst abs | median (bias) |", "|---|---|---|---|---|---|"]
    for op in sorted({r["op"] for r in rows}):
        for lab in labels:
            s = fit.summarize_errors([r[f"err_{lab}"] for r in rows if r["op"] == op])
            lines.append(f"| {op} | {lab} | {s['points']} | {s['median_abs']:.1%} | {s['max_abs']:.1%} | "
                         f"{s['median']:+.1%} |")
    lines += ["", "## Points", "", "Measured = CUDA-graph replay; eager = the same calls launched one by one.", "",
              "| op | shape | measured µs | eager µs | achieved GB/s | "
              + " | ".join(f"pred {lab} µs | err {lab}" for lab in labels) + " |",
              "|---|---|---|---|---|" + "---|---|" * len(labels)]
    for r in rows:
        preds = " | ".join(f"{r[f'pred_{lab}_us']:.1f} | {r[f'err_{lab}']:+.1%}" for lab in labels)
        lines.append(f"| {r['op']} | {r['shape']} | {r['measured_us']:.1f} | {r['eager_us']:.1f} | "
                     f"{r['achieved_GBps']:.0f} | {preds} |")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], labels: list[str], title: str, path: Path) -> None:
    """Predicted vs measured per op, one panel per profile, each point's error written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels), figsize=(6.5 * len(labels), 5.5), squeeze=False)
    ops = sorted({r["op"] for r in rows})
    colors = dict(zip(ops, ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False))
    meas = [r["measured_us"] for r in rows]
    for ax, lab in zip(axes[0], labels, strict=True):
        pred = [r[f"pred_{lab}_us"] for r in rows]
        lo, hi = min(meas + pred) * 0.7, max(meas + pred) * 1.4
        xs = [lo, hi]
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.fill_between(xs, [x * 0.85 for x in xs], [x * 1.15 for x in xs], color="0.88", label="±15 %")
        for op in ops:
            sel = [r for r in rows if r["op"] == op]
            ax.scatter([r["measured_us"] for r in sel], [r[f"pred_{lab}_us"] for r in sel], s=14,
                       color=colors[op], label=op)
            for r in sel:
                ax.annotate(f"{r[f'err_{lab}']:+.0%}", (r["measured_us"], r[f"pred_{lab}_us"]), fontsize=5,
                            xytext=(2, -2), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlabel="measured µs (CUDA graph)", ylabel=f"predicted µs ({lab})",
               title=f"{title}: {lab}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m helix.validation.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (4 files)")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: tests the script only")
    args = ap.parse_args(argv)
    import torch

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device (use --cpu-smoke to test the script on a CPU)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timer = Timer("cpu" if smoke else "cuda")
    if smoke:
        device_name, capacity, preset = "cpu-smoke", 8e9, "h100"
    else:
        props = torch.cuda.get_device_properties(0)
        device_name, capacity = torch.cuda.get_device_name(0), float(props.total_memory)
        preset = "h200" if "H200" in device_name else "h100"
    slug = device_name.lower().replace("nvidia ", "").replace(" ", "-")
    slug = "".join(c for c in slug if c.isalnum() or c in "-._")
    cal = calibrate_device(timer, smoke)
    print(f"[{time.perf_counter() - t0:.0f}s] calibration: {cal}", flush=True)
    prof = profile_mapping(cal, preset, device_name, capacity)
    import yaml

    profile_path = out / f"profile-{slug}.yaml"
    profile_path.write_text(f"# {device_name}, {time.strftime('%Y-%m-%d')}; helix.validation.gpu_check\n"
                            + yaml.safe_dump(prof, sort_keys=False, width=200))
    profiles = {preset: load_hardware(preset), "measured": hardware_from_mapping(profile_path.name, prof)}
    budget = 8e6 if smoke else 0.35 * capacity
    points: list[Point] = []
    sms = 8 if smoke else torch.cuda.get_device_properties(0).multi_processor_count
    timer = Timer(timer.device, graphs=not smoke)  # decode points replay CUDA graphs, as serving engines do
    for section in (lambda: gqa_points(timer, smoke, budget, sms), lambda: mla_points(timer, smoke, budget, sms),
                    lambda: gemm_points(timer, smoke)):
        try:
            points += section()
        except Exception as exc:  # noqa: BLE001 - keep the other sections' points
            print(f"section failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not smoke:
            torch.cuda.empty_cache()
        print(f"[{time.perf_counter() - t0:.0f}s] {len(points)} points", flush=True)
    rows = predictions(points, profiles)
    if timer.graph_failures:
        print(f"{timer.graph_failures} points timed eagerly (graph capture failed)", file=sys.stderr)
    labels = list(profiles)
    write_csv(rows, out / "gpu_validation.csv")
    note = ("> CPU smoke run: tiny sizes timed on the CPU against GPU presets — tests the script, validates "
            "nothing.\n" if smoke else "")
    wall = time.perf_counter() - t0
    header = (f"# Single-GPU validation: {device_name}, {time.strftime('%Y-%m-%d %H:%M %Z')}\n\n{note}"
              f"torch {torch.__version__}; predictions = helix.cost.ops.op_time_s (roofline + launch) under "
              f"preset `{preset}` and the measured profile `{profile_path.name}`. Points are CUDA-graph replays "
              f"({timer.graph_failures} fell back to eager), CUDA events, median of 10 after warm-up, operands "
              f"rotated over > 200 MB so each call reads HBM. Wall {wall:.0f} s.")
    write_markdown(rows, cal, labels, header, out / "gpu_validation.md")
    try:
        plot(rows, labels, device_name, out / "gpu_validation.png")
    except Exception as exc:  # noqa: BLE001 - the tables matter more than the figure
        print(f"plot skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
    for lab in labels:
        s = fit.summarize_errors([r[f"err_{lab}"] for r in rows])
        print(f"{lab}: {s}")
    print(f"wrote {profile_path}, {out / 'gpu_validation.csv'}, {out / 'gpu_validation.md'} "
          f"in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
