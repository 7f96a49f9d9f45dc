"""MoE FFN of DeepSeek-V3 on the attention ranks: routing, expert shards, Helix TPF x EP and DP+EP.

Routing follows Hugging Face's ``DeepseekV3TopkRouter`` op for op (so the same experts win every
tie): sigmoid scores, plus the correction bias for the choice only, group score = sum of the top-2
biased scores per group, the best ``topk_group`` groups kept, top-k experts among them, weights are
the *unbiased* scores of the chosen experts, normalised to sum 1 and scaled by
``routed_scaling_factor``.

Helix [paper §2.2, Fig. 4]: after the O-projection all-reduce every rank holds the full [B, H], so
routing is local. FFN rank r = ep_rank * TPF + tpf_rank holds E/EP experts, each split by TPF along
the expert FFN dim (Fe/TPF), and 1/N of the shared expert(s) along their FFN dim. Its partial [B, H]
(zero rows for tokens routed elsewhere) is all-reduced over TPF (intra-expert all-reduce),
all-gathered over EP (inter-expert all-gather) and summed locally: the exact MoE output on every
rank. The shared expert's slices ride the same two reductions, so it costs no extra collective.

DP+EP baseline (the production DeepSeek layout, DeepEP's low-latency kernels [S14]): each rank owns
B_loc whole requests and E/EP whole experts. Dispatch sends one row of H per (token, selected
expert), expert-major, with ``Comm.all_to_all_v`` (split sizes); the experts' (unweighted) outputs come
back in the same order on the combine all-to-all, and the sender applies the routing weights. The
receiver learns how many rows it gets per local expert from a count exchange (E int64 per rank,
``moe_dispatch_counts``, E * 8 bytes, independent of B and H; the simulator's step has it too).

References: paper §2.2 (MoE on a TPF x EP grid), §3.1 (DeepSeek-R1); Hugging Face transformers
5.24 ``modeling_deepseek_v3.py`` (router, experts, shared experts).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from helix.errors import HelixInputError

# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class RouterConfig:
    num_experts: int  # E
    experts_per_token: int  # k
    num_groups: int  # n_group
    topk_groups: int  # topk_group
    normalise: bool  # norm_topk_prob
    scaling: float  # routed_scaling_factor


def route(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, cfg: RouterConfig):
    """(weights [T, k] fp32, expert ids [T, k]) for tokens x [T, H], exactly as Hugging Face routes."""
    E, G = cfg.num_experts, cfg.num_groups
    logits = F.linear(x.float(), weight.float())  # [T, E]
    scores = logits.sigmoid()
    choice = scores + bias  # the correction bias steers the choice, not the weights
    group_scores = choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)  # [T, G]
    group_idx = torch.topk(group_scores, k=cfg.topk_groups, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    expert_mask = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
    choice = choice.masked_fill(~expert_mask.bool(), float("-inf"))
    idx = torch.topk(choice, k=cfg.experts_per_token, dim=-1, sorted=False)[1]  # [T, k]
    w = scores.gather(1, idx)
    if cfg.normalise:
        w = w / (w.sum(dim=-1, keepdim=True) + 1e-20)
    return w * cfg.scaling, idx


def expert_load(idx: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Tokens routed to each expert: [E] int64, summing to T * k."""
    return torch.bincount(idx.reshape(-1), minlength=num_experts)


# ---------------------------------------------------------------- weights


@dataclass
class MoEShard:
    """One rank's MoE weights: local experts (split by TPF) and its slice of the shared expert."""

    router_weight: torch.Tensor  # [E, H], replicated
    router_bias: torch.Tensor  # [E], replicated
    router: RouterConfig
    first_expert: int  # global id of local expert 0
    gate: torch.Tensor  # [E/EP, Fe/TPF, H]
    up: torch.Tensor  # [E/EP, Fe/TPF, H]
    down: torch.Tensor  # [E/EP, H, Fe/TPF]
    shared_gate: torch.Tensor  # [Fs/n_shard, H]
    shared_up: torch.Tensor  # [Fs/n_shard, H]
    shared_down: torch.Tensor  # [H, Fs/n_shard]

    @property
    def num_local_experts(self) -> int:
        return self.gate.shape[0]


def check_moe_split(num_experts: int, expert_ffn_dim: int, shared_ffn_dim: int, tpf: int, ep: int,
                    shared_shards: int) -> None:
    """Raise HelixInputError unless E/EP, Fe/TPF and the shared expert's F/shards divide evenly."""
    if num_experts % ep:
        raise HelixInputError("ep", f"must divide the routed expert count ({num_experts}), got {ep}")
    if expert_ffn_dim % tpf:
        raise HelixInputError("tpf", f"must divide the expert FFN dim ({expert_ffn_dim}), got {tpf}")
    if shared_ffn_dim % shared_shards:
        raise HelixInputError("layout", f"the shared expert's FFN dim ({shared_ffn_dim}) must divide over "
                              f"{shared_shards} ranks")


def shard_moe(w, prefix: str, router: RouterConfig, tpf: int, ep: int, tpf_rank: int, ep_rank: int,
              shared_shards: int, shared_rank: int) -> MoEShard:
    """One rank's MoE weights from a Hugging Face state dict (``w(key)`` returns fp32 tensors).

    Routed experts: E/EP consecutive experts per EP rank, each with Fe split in TPF contiguous slices
    (part tpf_rank). The shared expert's F is split in ``shared_shards`` slices (N under Helix, 1
    under DP+EP), part ``shared_rank``.
    """
    gate_up = w(prefix + "experts.gate_up_proj")  # [E, 2 Fe, H]: gate rows, then up rows
    down = w(prefix + "experts.down_proj")  # [E, H, Fe]
    E, Fe = gate_up.shape[0], gate_up.shape[1] // 2
    shared_gate = w(prefix + "shared_experts.gate_proj.weight")  # [Fs, H]
    Fs = shared_gate.shape[0]
    check_moe_split(E, Fe, Fs, tpf, ep, shared_shards)
    E_loc, f, fs = E // ep, Fe // tpf, Fs // shared_shards
    experts = slice(ep_rank * E_loc, (ep_rank + 1) * E_loc)
    cols = slice(tpf_rank * f, (tpf_rank + 1) * f)
    shared = slice(shared_rank * fs, (shared_rank + 1) * fs)
    return MoEShard(
        router_weight=w(prefix + "gate.weight"),
        router_bias=w(prefix + "gate.e_score_correction_bias"),
        router=router,
        first_expert=ep_rank * E_loc,
        gate=gate_up[experts, :Fe][:, cols].contiguous(),
        up=gate_up[experts, Fe:][:, cols].contiguous(),
        down=down[experts][:, :, cols].contiguous(),
        shared_gate=shared_gate[shared].contiguous(),
        shared_up=w(prefix + "shared_experts.up_proj.weight")[shared].contiguous(),
        shared_down=w(prefix + "shared_experts.down_proj.weight")[:, shared].contiguous(),
    )


# ---------------------------------------------------------------- local compute


def swiglu(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """down(silu(gate x) * up x): x [T, H] -> [T, H] (a partial sum when the weights are F-slices)."""
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def local_experts_partial(x: torch.Tensor, w: torch.Tensor, idx: torch.Tensor, shard: MoEShard) -> torch.Tensor:
    """Sum over this rank's experts of weight * expert slice(x): [T, H], zero rows where none is local."""
    out = torch.zeros_like(x)
    for j in range(shard.num_local_experts):
        token, slot = torch.where(idx == shard.first_expert + j)
        if token.numel():
            y = swiglu(x[token], shard.gate[j], shard.up[j], shard.down[j])
            out.index_add_(0, token, y * w[token, slot, None].to(y.dtype))
    return out


def shared_partial(x: torch.Tensor, shard: MoEShard) -> torch.Tensor:
    return swiglu(x, shard.shared_gate, shard.shared_up, shard.shared_down)


# ---------------------------------------------------------------- Helix: TPF x EP on the attention ranks


def helix_moe(comm, x: torch.Tensor, shard: MoEShard):
    """Exact MoE output for the full batch x [B, H] (replicated over N) on every rank; and the load [E].

    Collectives (as the simulator's step names them): moe_tp_all_reduce over TPF (n = B H b), moe_ep_all_gather
    over EP (n = EP B H b), then the local reduction over EP.
    """
    with comm.phase("moe_router"):
        w, idx = route(x, shard.router_weight, shard.router_bias, shard.router)  # [B, k], replicated
    with comm.phase("moe_experts"):
        partial = local_experts_partial(x, w, idx, shard) + shared_partial(x, shard)  # [B, H], partial over N
    partial = comm.all_reduce(partial, "tpf", "moe_tp_all_reduce")  # [B, H], partial over EP
    gathered = comm.all_gather(partial, "ep", "moe_ep_all_gather")  # [EP, B, H]
    return gathered.sum(dim=0), expert_load(idx, shard.router.num_experts)  # local reduction: [B, H]


# ---------------------------------------------------------------- DP+EP: dispatch / combine all-to-all


def dp_ep_moe(comm, x: torch.Tensor, shard: MoEShard):
    """MoE output for this rank's own tokens x [B_loc, H], and the expert load [E] of those tokens.

    Collectives: moe_dispatch_counts (E int64 per rank), then
    moe_dispatch_all_to_all and moe_combine_all_to_all over EP, each sending B_loc k rows of H.
    """
    E, k = shard.router.num_experts, shard.router.experts_per_token
    EP = comm.group_sizes["ep"]
    E_loc = E // EP
    with comm.phase("moe_router"):
        w, idx = route(x, shard.router_weight, shard.router_bias, shard.router)  # [B_loc, k]
        flat = idx.reshape(-1)  # one row per (token, selected expert)
        order = torch.argsort(flat, stable=True)  # expert-major, hence destination-rank-major
        token = order // k  # source token of each row
        send_counts = torch.bincount(flat, minlength=E)  # [E]: rows per expert from this rank
    recv_counts, _ = comm.all_to_all(send_counts, "ep", "moe_dispatch_counts")  # E/EP counts to each EP rank
    recv_counts = recv_counts.view(EP, E_loc)  # [EP sources, E/EP]: rows this rank gets per local expert
    send_rows = send_counts.view(EP, E_loc).sum(dim=1).tolist()
    recv_rows = recv_counts.sum(dim=1).tolist()
    received = comm.all_to_all_v(x[token], send_rows, recv_rows, "ep",
                                 "moe_dispatch_all_to_all")  # [rows in, H]: by source, expert-major
    with comm.phase("moe_experts"):
        expert_of_row = torch.repeat_interleave(torch.arange(E_loc, device=x.device).repeat(EP),
                                                recv_counts.reshape(-1))  # local expert of each row
        out = torch.zeros_like(received)
        for j in range(E_loc):
            rows = torch.where(expert_of_row == j)[0]
            if rows.numel():
                out[rows] = swiglu(received[rows], shard.gate[j], shard.up[j], shard.down[j])
    back = comm.all_to_all_v(out, recv_rows, send_rows, "ep", "moe_combine_all_to_all")  # [B_loc k, H]
    with comm.phase("moe_experts"):
        y = torch.zeros_like(x)
        y.index_add_(0, token, back * w.reshape(-1)[order, None].to(back.dtype))
        y = y + shared_partial(x, shard)  # the shared expert runs whole on every rank
    return y, expert_load(idx, E)


def expert_load_lines(loads: dict[str, torch.Tensor], first_moe_layer: int) -> list[str]:
    """Report lines: tokens per expert for each MoE layer, summed over the decode steps, plus the max/mean."""
    decode = [load for step, load in loads.items() if step.startswith("decode")]
    if not decode:
        return []
    total = torch.stack(decode).sum(dim=0)  # [MoE layers, E]
    lines = [f"expert load over {len(decode)} decode steps (tokens per expert; hottest / mean):"]
    for i, row in enumerate(total.tolist()):
        mean = sum(row) / len(row)
        lines.append(f"  layer {first_moe_layer + i}: " + " ".join(f"{n:d}" for n in row)
                     + f"  ({max(row) / mean:.2f}x)")
    return lines
