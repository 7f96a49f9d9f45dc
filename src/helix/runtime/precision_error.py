"""The precision study, measured in the runtime's code: the attention output error of the Helix KVP combine
when the KV cache and the exchanged partial outputs are stored in low precision.

One query group (``query_heads`` heads sharing one KV head of ``head_dim``, Llama-405B's 128 / 8 = 16 heads of
128 by default) attends to a synthetic context of S tokens. Every (KV format, KVP, payload format) is run as
Helix runs it: KVP ranks own contiguous shards of the cache; each rank's partial output and natural-log LSE
come from ``helix.runtime.attention.local_attention`` on the dequantised cache (fp32 math); the partial
outputs are rounded to the payload format (LSE stays fp32, as TensorRT-LLM sends it); the exchange is merged
by ``combine_partial_attention``. The reference is the same attention with no quantisation and no split,
in float64 (so the fp32 run's own round-off shows as error, ~1e-6).

Synthetic but heavy-tailed values (``SyntheticKV``): keys Student-t with 4 degrees of freedom (inverse CDF,
one uniform per element) with ``outlier_channels`` channels scaled by ``outlier_scale`` (the per-channel
key outliers that make per-tensor scales coarse); values and queries standard normal. Seeded per
(seed, chunk), so a context is the same tokens whatever KVP reads it.

Memory stays bounded at 1M tokens: the context is generated, quantised and attended ``chunk_tokens`` at a
time (about 16 MB per tensor), each rank's partial merged exactly as it goes; the finest shards (the largest
KVP) are kept and the ranks of a smaller KVP merge their consecutive fine shards, as ``local_attention``
merges its split-KV blocks. A per-tensor scale needs the whole cache's amax: a first pass over the chunks.
"""

from __future__ import annotations

import math

import torch

from helix.errors import HelixInputError
from helix.runtime.attention import combine_partial_attention, local_attention
from helix.runtime.precision_spec import PAYLOAD_FORMATS, Study, SyntheticKV
from helix.runtime.quantise import NEEDS_TENSOR_AMAX, fp8_row, nvfp4, quantise

ROW_FIELDS = ("context", "kv_format", "kvp", "payload_format", "seed", "rel_l2_mean", "rel_l2_max", "max_abs_error")


def student_t4_quantile(u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of Student's t with 4 degrees of freedom: sign(u - 1/2) · 2·sqrt(q - 1),
    q = cos(arccos(sqrt(α)) / 3) / sqrt(α), α = 4u(1 - u) (closed form, one uniform per sample)."""
    alpha = 4 * u * (1 - u)
    q = torch.cos(torch.arccos(torch.sqrt(alpha)) / 3) / torch.sqrt(alpha)
    return torch.sign(u - 0.5) * 2 * torch.sqrt(torch.clamp(q - 1, min=0))


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stream + 1)


def query(spec: SyntheticKV, seed: int) -> torch.Tensor:
    """[1, 1, query_heads, head_dim]: one decode token's query heads of one KV group."""
    return torch.randn(1, 1, spec.query_heads, spec.head_dim, generator=_generator(seed, -1))


def chunk(spec: SyntheticKV, seed: int, index: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [tokens, head_dim] of chunk ``index``, the same whoever asks."""
    g = _generator(seed, index)
    u = torch.rand(tokens, spec.head_dim, generator=g).clamp_(1e-7, 1 - 1e-7)
    k = student_t4_quantile(u)
    k[:, :spec.outlier_channels] *= spec.outlier_scale
    v = torch.randn(tokens, spec.head_dim, generator=g)
    return k, v


def chunks(spec: SyntheticKV, seed: int, context: int):
    """(first token, keys, values) over the context, ``chunk_tokens`` at a time."""
    for index, start in enumerate(range(0, context, spec.chunk_tokens)):
        yield (start, *chunk(spec, seed, index, min(spec.chunk_tokens, context - start)))


def tensor_amax(spec: SyntheticKV, seed: int, context: int) -> tuple[float, float]:
    """max |K| and max |V| over the whole context: the per-tensor scales' amax."""
    ak = av = 0.0
    for _, k, v in chunks(spec, seed, context):
        ak, av = max(ak, float(k.abs().max())), max(av, float(v.abs().max()))
    return ak, av


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """local_attention of one query token over [n, D] keys: ([heads, D], [heads])."""
    n = k.shape[0]
    visible = torch.zeros(n, dtype=torch.long)  # every cached token precedes the query
    out, lse = local_attention(q, k[None, None], v[None, None], torch.zeros(1, dtype=torch.long), visible, scale)
    return out[0, 0], lse[0, 0]


def _merge(acc: tuple[torch.Tensor, torch.Tensor], part: tuple[torch.Tensor, torch.Tensor]):
    return combine_partial_attention(torch.stack([acc[0], part[0]]), torch.stack([acc[1], part[1]]))


def fine_bounds(context: int, shards: int) -> list[int]:
    """Token boundaries of ``shards`` contiguous shards (sizes differ by at most one token)."""
    return [r * context // shards for r in range(shards + 1)]


def fine_partials(q: torch.Tensor, spec: SyntheticKV, seed: int, context: int, shards: int, kv_formats):
    """{kv format: (outs [shards, heads, D], lses [shards, heads])} over the fine shards, and the float64
    unsplit, unquantised reference output [heads, D]."""
    scale = 1 / math.sqrt(spec.head_dim)
    amax = tensor_amax(spec, seed, context) if any(f in NEEDS_TENSOR_AMAX for f in kv_formats) else (None, None)
    heads, D = spec.query_heads, spec.head_dim
    empty = lambda dt: (torch.zeros(heads, D, dtype=dt), torch.full((heads,), float("-inf"), dtype=dt))  # noqa: E731
    acc = {f: [empty(torch.float32) for _ in range(shards)] for f in kv_formats}
    ref = empty(torch.float64)
    bounds = fine_bounds(context, shards)
    for start, k, v in chunks(spec, seed, context):
        end = start + k.shape[0]
        ref = _merge(ref, _attend(q.double(), k.double(), v.double(), scale))
        for fmt in kv_formats:
            kq, vq = quantise(k, fmt, amax[0]), quantise(v, fmt, amax[1])
            for r in range(shards):
                lo, hi = max(bounds[r], start), min(bounds[r + 1], end)
                if lo < hi:
                    acc[fmt][r] = _merge(acc[fmt][r], _attend(q, kq[lo - start:hi - start], vq[lo - start:hi - start],
                                                              scale))
    stacked = {f: (torch.stack([o for o, _ in a]), torch.stack([lse for _, lse in a])) for f, a in acc.items()}
    return stacked, ref[0]


def rank_partials(outs: torch.Tensor, lses: torch.Tensor, kvp: int):
    """Each of ``kvp`` ranks merges its consecutive fine shards exactly (fp32): ([kvp, heads, D], [kvp, heads])."""
    per = outs.shape[0] // kvp
    parts = [combine_partial_attention(outs[r * per:(r + 1) * per], lses[r * per:(r + 1) * per]) for r in range(kvp)]
    return torch.stack([o for o, _ in parts]), torch.stack([lse for _, lse in parts])


def payload(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """A partial output as it arrives: fp32, bf16, E4M3 with one fp32 scale per head row, or NVFP4."""
    if fmt == "fp32":
        return x
    if fmt == "bf16":
        return x.to(torch.bfloat16).float()
    if fmt == "fp8_row":
        return fp8_row(x, block=x.shape[-1])
    if fmt == "nvfp4":
        return nvfp4(x, float(x.abs().max()))  # the send buffer's amax sets the fp32 tensor scale
    raise HelixInputError("payload_format", f"unknown format {fmt!r}; allowed: {', '.join(PAYLOAD_FORMATS)}")


def helix_output(outs: torch.Tensor, lses: torch.Tensor, kvp: int, payload_format: str) -> torch.Tensor:
    """The combined output [heads, D] of ``kvp`` ranks whose partials travel in ``payload_format``; KVP = 1
    exchanges nothing (as helix_attention skips it), so its payload format does not apply."""
    rank_out, rank_lse = rank_partials(outs, lses, kvp)
    if kvp == 1:
        return rank_out[0]
    return combine_partial_attention(payload(rank_out, payload_format), rank_lse)[0]


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """(mean over heads of ||o - ref|| / ||ref||, the worst head's, max |o - ref|)."""
    diff = out.double() - ref
    rel = diff.norm(dim=-1) / ref.norm(dim=-1)
    return float(rel.mean()), float(rel.max()), float(diff.abs().max())


def run(study: Study, progress=None) -> list[dict]:
    """One row (ROW_FIELDS) per context × KV format × KVP × payload format × seed."""
    rows = []
    shards = max(study.kvps)
    for context in study.contexts:
        for seed in study.seeds:
            q = query(study.data, seed)
            parts, ref = fine_partials(q, study.data, seed, context, shards, study.kv_formats)
            for fmt, (outs, lses) in parts.items():
                for kvp in study.kvps:
                    for pf in study.payload_formats:
                        mean, worst, max_abs = errors(helix_output(outs, lses, kvp, pf), ref)
                        rows.append(dict(zip(ROW_FIELDS, (context, fmt, kvp, pf, seed, mean, worst, max_abs),
                                             strict=True)))
            if progress:
                progress(context, seed)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Over seeds: the mean of the per-seed mean relative L2 error, the worst head's, the worst max |error|."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["context"], r["kv_format"], r["kvp"], r["payload_format"]), []).append(r)
    return [{"context": c, "kv_format": f, "kvp": k, "payload_format": p, "seeds": len(g),
             "rel_l2_mean": sum(r["rel_l2_mean"] for r in g) / len(g), "rel_l2_worst": max(r["rel_l2_max"] for r in g),
             "max_abs_error": max(r["max_abs_error"] for r in g)} for (c, f, k, p), g in groups.items()]
