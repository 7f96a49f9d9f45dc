"""The single-GPU decode points (torch worker code): GQA and MLA attention and decode GEMMs, timed, with
the bytes and FLOPs the simulator's own spec formulas give (helix.specs, helix.cost.memory).

- GQA attention (Llama-405B: Q = 128, K = 8, Hsz = 128, bf16 KV) per GPU at TPA = 1 and 8: the g = Q/K
  query heads of a KV head laid out as the query-length axis of PyTorch's flash kernel, the sequence
  split into shards (flash decoding) so that small batches fill the GPU, the shards' partial outputs
  merged by their LSE with the runtime's own merge (helix.runtime.attention.combine_partial_attention:
  the Helix combine, on one GPU);
- MLA attention (DeepSeek-R1 absorbed: 128 heads against a 576-wide latent cache), the same way as MQA
  through the memory-efficient kernel (flash takes heads <= 256 wide) with V = the latent (576 wide;
  FlashMLA stops at 512), falling back to two GEMMs + softmax where it is refused;
- decode GEMMs: weight-read-bound per-GPU shards of Llama-405B (TP = 8) and DeepSeek-R1 at B = 1..64.

Each point: CUDA events around ``inner`` back-to-back calls, median of repetitions after warm-up,
operands rotated over copies larger than L2 so that every call reads HBM.
"""

# ruff: noqa: N803, N806 - shapes use the paper's symbols (B, S, Q, K, Hsz), as in helix.cost

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from helix.cost import memory
from helix.runtime.attention import combine_partial_attention
from helix.specs.model_loader import load_model
from helix.specs.precision import PrecisionSpec
from helix.validation.gpu_timer import Timer, copies, rotating

BF16 = PrecisionSpec.uniform("bf16")
FLUSH_BYTES = 200e6  # operands rotated over more than this: larger than any L2


@dataclass(frozen=True)
class Point:
    op: str
    shape: str
    bytes_read: float
    flops: float
    measured_s: float
    note: str = ""
    eager_s: float = 0.0


def _partial_attention(q, k, v, kernel: str):
    """(out [B, H, L, Dv], natural-log LSE [B, H, L] fp32) of q [B, H, L, D] against k, v [B, H, S, D*]."""
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

    Each shard gives a partial output and its LSE; the runtime's merge combines them exactly: the same
    merge Helix does across KVP ranks.
    """
    B, Hk, g, D = q.shape
    S, c = k.shape[2], chunks
    qs = q[:, :, None].expand(B, Hk, c, g, D).reshape(B, Hk * c, g, D)
    ks = k.reshape(B, Hk * c, S // c, k.shape[-1])
    vs = v.reshape(B, Hk * c, S // c, v.shape[-1]) if v.data_ptr() != k.data_ptr() else ks
    out, lse = _partial_attention(qs, ks, vs, kernel)
    outs = out.view(B, Hk, c, g, -1).float().permute(2, 0, 1, 3, 4)  # [c, B, Hk, g, Dv]: shards first
    merged, _ = combine_partial_attention(outs, lse.view(B, Hk, c, g).permute(2, 0, 1, 3))
    return merged.to(q.dtype)  # [B, Hk, g, Dv]


def _chunks(parallel: int, S: int, sms: int) -> int:
    """Shards of S so that parallel x shards >= 2 waves of SMs, each shard >= 512 tokens (S a power of 2)."""
    c = 1
    while parallel * c < 2 * sms and S // (2 * c) >= 512 and S % (2 * c) == 0:
        c *= 2
    return c


def _flush(dev: str) -> float:
    return FLUSH_BYTES if dev == "cuda" else 0.0


def gqa_points(timer: Timer, smoke: bool, budget_bytes: float, sms: int) -> list[Point]:
    model = load_model("llama-3.1-405b")
    Q, K, Hsz = model.num_query_heads, model.num_kv_heads, model.head_dim
    dev, pts = timer.device, []
    grid = [(8, 1, 1024), (8, 4, 2048)] if smoke else [
        (tpa, b, s) for tpa in (8, 1) for b in (1, 8, 32) for s in (4096, 32768, 262144, 1048576)]
    kernel = "flash" if dev == "cuda" else "math"
    for tpa, B, S in grid:
        Qh, Kh = (Q // tpa, K // tpa) if not smoke else (4, 1)
        hs = Hsz if not smoke else 32
        kv_bytes = B * S * Kh * 2 * hs * 2
        if kv_bytes > budget_bytes:
            continue
        c = _chunks(B * Kh, S, sms)
        n = copies(kv_bytes, _flush(dev))
        q = torch.randn(B, Kh, Qh // Kh, hs, device=dev, dtype=torch.bfloat16)  # q: [B, K/TPA, g, Hsz]
        kv = [(q, torch.randn(B, Kh, S, hs, device=dev, dtype=torch.bfloat16),  # k, v: [B, K/TPA, S, Hsz]
               torch.randn(B, Kh, S, hs, device=dev, dtype=torch.bfloat16), c, kernel) for _ in range(n)]
        t = timer.time_s(rotating(split_kv_decode, kv), repeats=10 if not smoke else 3, inner=n)
        del kv
        kv_tok = float(memory.kv_bytes_per_token_per_layer_per_gpu(model, BF16, tpa)) if not smoke else Kh * 2 * hs * 2
        flops_tok = Qh * (model.attention_flops_per_cached_token_per_head if not smoke else 4 * hs)
        pts.append(Point("gqa_attention", f"TPA={tpa} Q/TPA={Qh} K/TPA={Kh} B={B} S={S}",
                         B * S * kv_tok, B * S * flops_tok, t, f"{kernel} split-KV x{c} + LSE merge",
                         timer.last_eager_s))
    return pts


def _mla_kernel(dev: str, q, cache, c: int) -> str | None:
    """The first kernel that takes 576-wide heads (the values are the latent itself)."""
    for candidate in (("efficient", "math") if dev == "cuda" else ("math",)):
        try:
            split_kv_decode(q, cache, cache, c, candidate)
            return candidate
        except Exception as exc:  # noqa: BLE001 - a kernel that does not take 576-wide heads
            print(f"mla: kernel {candidate} unavailable: {type(exc).__name__}: {str(exc)[:120]}", file=sys.stderr)
    return None


def mla_points(timer: Timer, smoke: bool, budget_bytes: float, sms: int) -> list[Point]:
    """MLA absorbed decode as MQA: 128 query heads on the "length" axis against one 576-wide latent head."""
    model = load_model("deepseek-r1")
    Qh, dc, dr = (8, 32, 8) if smoke else (model.num_query_heads, model.kv_lora_rank, model.qk_rope_head_dim)
    width = dc + dr
    dev, pts = timer.device, []
    grid = [(1, 1024), (4, 2048)] if smoke else [(b, s) for b in (1, 8, 32) for s in (4096, 32768, 131072, 524288)]
    for B, S in grid:
        cache_bytes = B * S * width * 2
        if cache_bytes * 1.2 > budget_bytes:
            continue
        c = _chunks(B * 2, S, sms)  # ~2 tiles of 64 query heads per shard
        n = copies(cache_bytes, _flush(dev))
        q = torch.randn(B, 1, Qh, width, device=dev, dtype=torch.bfloat16)  # q: [B, 1, Q, d_c + d_rope]
        caches = [torch.randn(B, 1, S, width, device=dev, dtype=torch.bfloat16) for _ in range(n)]
        kernel = _mla_kernel(dev, q, caches[0], c)
        if kernel is None:
            continue
        t = timer.time_s(rotating(split_kv_decode, [(q, x, x, c, kernel) for x in caches]),
                         repeats=10 if not smoke else 3, inner=n)
        del caches
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
    dev, pts = timer.device, []
    for name, k, n in gemm_shapes(smoke):
        w_bytes = k * n * 2
        m = copies(w_bytes, _flush(dev))
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) for _ in range(m)]
        for B in ((1, 4) if smoke else (1, 8, 64)):
            x = torch.randn(B, k, device=dev, dtype=torch.bfloat16)
            t = timer.time_s(rotating(torch.nn.functional.linear, [(x, w) for w in ws]),
                             repeats=10 if not smoke else 3, inner=m)
            pts.append(Point("decode_gemm", f"{name} B={B} K={k} N={n}", w_bytes + 2 * B * (k + n),
                             2.0 * B * k * n, t, "F.linear, bf16", timer.last_eager_s))
        del ws
    return pts
