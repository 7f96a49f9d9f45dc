"""Re-shard a live KV cache mid-generation from one Helix layout to another on the same ranks (Llama family).

``helix run ... --reshard-at T --reshard-kvp 4`` decodes steps 0..T-1 under the job's layout (e.g. KVP 2 x
TPA 2), then, before decode step T, moves every rank's KV to the owner it has under the new layout (KVP 4 x
TPA 1 on the same 4 ranks) and decodes the rest there:

- KV: block ``i`` (``block_tokens`` tokens, round-robin ownership only) belongs to KVP rank ``i mod KVP``
  and its KV heads to the TPA slice; attention rank r = kvp_rank * TPA + tpa_rank (helix.layout). With
  TPA <= K no piece is duplicated, so each (token, head) piece has one holder before and one after: a rank
  sends every piece it holds whose new owner is another rank, in one all-to-all over the N ranks, recorded
  as step ``"reshard"``, phase ``kv_reshard`` (n = the rank's send buffer; its own pieces stay put). Summed
  over ranks it is the simulator's re-shard bytes of one copy of the cache, exactly when the cache holds
  whole periods of lcm(KVP_old, KVP_new) blocks (helix.validation.traffic compares them byte for byte).
- Weights: every rank already holds the full Hugging Face state dict it was built from (helix.runtime.launch
  hands it to every worker), so the new layout's shards (Q, K, V by the new TPA slice, O by the new N slice)
  are re-sliced locally: no weight moves, nothing recorded. The FFN (TPF = N) and the vocabulary shards
  keep their rank.
- Process groups: the new layout's groups are created on every rank (torch.distributed.new_group, the
  same order everywhere); the traffic recorder and phase timings carry over to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from helix.errors import HelixInputError
from helix.layout import Layout
from helix.runtime.comm import Comm
from helix.runtime.decoder import Generation
from helix.runtime.kv_cache import KVCache, kv_owner

PHASE = "kv_reshard"
STEP = "reshard"


@dataclass(frozen=True)
class Reshard:
    """Before decode step ``at_step`` (>= 1), re-shard to KVP ``kvp`` x TPA ``tpa`` on the same ranks."""

    at_step: int
    kvp: int
    tpa: int

    def __post_init__(self) -> None:
        for name in ("at_step", "kvp", "tpa"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HelixInputError(f"reshard_{name}", f"must be an integer >= 1, got {v!r}")

    def layout(self, old: Layout) -> Layout:
        """The new Helix layout on the same ranks (TPF = N, EP as before); raises for one that cannot be."""
        if old.strategy != "helix" or self.kvp * self.tpa != old.num_gpus:
            raise HelixInputError("reshard_kvp", f"reshard-kvp x reshard-tpa (={self.kvp}x{self.tpa}) must equal "
                                  f"the job's kvp x tpa (={old.num_gpus}) under helix")
        return Layout.helix(kvp=self.kvp, tpa=self.tpa, ep=old.ep)


def _heads(tpa_rank: int, tpa: int, kv_heads: int) -> range:
    per = kv_heads // tpa
    return range(tpa_rank * per, (tpa_rank + 1) * per)


def move_kv(cache: KVCache, old: Layout, new: Layout, comm: Comm, tokens: int, kv_heads: int) -> KVCache:
    """This rank's KV cache under ``new``: keep what it owns there, all-to-all the rest (module docstring)."""
    if cache.rule != "round_robin":
        raise HelixInputError("ownership", f"re-sharding needs round_robin ownership, got {cache.rule!r}")
    N, rank, block = old.num_gpus, comm.rank, cache.block_tokens
    positions = torch.arange(tokens, device=cache.positions.device)

    def holds(layout: Layout, r: int) -> tuple[torch.Tensor, range]:
        _, _, kvp_rank, tpa_rank = layout.attention_coords(r)
        owned = kv_owner(positions, cache.prompt_tokens, layout.kvp, block, "round_robin") == kvp_rank
        return positions[owned], _heads(tpa_rank, layout.tpa, kv_heads)

    def piece(src_pos, src_heads, dst_pos, dst_heads):
        """(slots in the source's cache, slots in the destination's, head range in each) of src -> dst."""
        both = src_pos[torch.isin(src_pos, dst_pos)]
        lo, hi = max(src_heads.start, dst_heads.start), min(src_heads.stop, dst_heads.stop)
        return (torch.searchsorted(src_pos, both), torch.searchsorted(dst_pos, both),
                slice(lo - src_heads.start, hi - src_heads.start), slice(lo - dst_heads.start, hi - dst_heads.start),
                max(hi - lo, 0))

    mine_old, mine_new = holds(old, rank), holds(new, rank)
    layers = len(cache.k)
    B, Hsz, dv = cache.k[0].shape[0], cache.k[0].shape[3], cache.value_dim
    fresh = KVCache(layers, B, len(mine_new[1]), Hsz, comm.kvp_rank, new.kvp, cache.prompt_tokens, block,
                    "round_robin", device=cache.positions.device, dtype=cache.k[0].dtype, value_dim=dv)
    fresh.ensure_capacity(max(len(mine_new[0]), 1))
    fresh.positions[:len(mine_new[0])] = mine_new[0]
    fresh.length = len(mine_new[0])
    sends, send_rows, recv_rows, recv_plan = [], [], [], []
    for r in range(N):
        out_src, out_dst, out_hs, _, nh = piece(*mine_old, *holds(new, r))
        in_src, in_dst, _, in_hd, nh_in = piece(*holds(old, r), *mine_new)
        if r == rank:  # what this rank keeps: copied locally, never sent
            for i in range(layers):
                fresh.k[i][:, in_hd, in_dst] = cache.k[i][:, out_hs, out_src]
                if dv:
                    fresh.v[i][:, in_hd, in_dst] = cache.v[i][:, out_hs, out_src]
            send_rows.append(0)
            recv_rows.append(0)
            continue
        parts = [t[i][:, out_hs, out_src].reshape(-1) for i in range(layers)
                 for t in ((cache.k, cache.v) if dv else (cache.k,))] if nh and len(out_src) else []
        sends += parts
        send_rows.append(sum(p.numel() for p in parts))
        recv_rows.append(layers * B * nh_in * len(in_dst) * (Hsz + dv) if nh_in else 0)
        recv_plan.append((r, in_dst, in_hd, nh_in))
    send = torch.cat(sends) if sends else cache.k[0].new_zeros(0)
    recv = comm.all_to_all_v(send, send_rows, recv_rows, "stage", PHASE)
    offset = 0
    for _, dst, hd, nh in recv_plan:
        if not nh or not len(dst):
            continue
        for i in range(layers):
            for t, width in ((fresh.k, Hsz), (fresh.v, dv)) if dv else ((fresh.k, Hsz),):
                n = B * nh * len(dst) * width
                t[i][:, hd, dst] = recv[offset:offset + n].view(B, nh, len(dst), width)
                offset += n
    return fresh


def run_generation(decoder, comm: Comm, payload, run, decoder_class, progress):
    """(Generation, the decoder at the end) of one ``launch.RunSpec`` of ``payload``'s job: plain ``generate``,
    or with its re-shard (``decoder_class`` builds the new layout's decoder from the full state dict)."""
    prompt = payload.job.prompt_ids
    if run.reshard is None:
        return decoder.generate(prompt, run.new_tokens, run.options, progress=progress), decoder

    def build(new_comm):
        return decoder_class(payload.arch, payload.state_dict, new_comm, name=payload.job.model)

    return generate(decoder, build, comm, prompt, run.new_tokens, run.options, run.reshard, progress)


def generate(decoder, build, comm: Comm, prompt_ids, new_tokens: int, options, reshard: Reshard, progress):
    """``HelixDecoder.generate`` with a re-shard before decode step ``reshard.at_step``; ``build(comm)`` makes
    the family's decoder for a Comm (the weights re-sliced locally). Returns the Generation; the new decoder
    and Comm live only for this run."""
    if reshard.at_step > new_tokens - 1:
        raise HelixInputError("reshard_at", f"must be a decode step below new_tokens - 1 (={new_tokens - 1}), "
                              f"got {reshard.at_step}")
    new_layout = reshard.layout(comm.layout)
    progress("prefill", 0)
    t0 = time.perf_counter()
    out = decoder.prefill(prompt_ids, options)
    prefill_s = time.perf_counter() - t0
    tokens, step_s = [out.next_tokens], []
    for i in range(new_tokens - 1):
        progress("decode", i)  # a failure during the re-shard reports decode step T
        if i == reshard.at_step:
            decoder = _switch(decoder, build, comm, new_layout)
        t0 = time.perf_counter()
        out = decoder.decode_step(tokens[-1])
        step_s.append(time.perf_counter() - t0)
        tokens.append(out.next_tokens)
    return Generation(torch.stack(tokens, dim=1), prefill_s, step_s), decoder


def _switch(decoder, build, comm: Comm, new_layout: Layout):
    """The re-shard itself: the new layout's groups, its decoder, the moved cache, the position carried."""
    if getattr(decoder, "family", "") != "llama":
        raise HelixInputError("reshard_kvp", f"re-sharding runs the llama family only, got {decoder.family!r}")
    new_comm = Comm.create(new_layout, comm.rank, comm.layout.num_gpus, timeout_s=60.0, device=comm.device)
    new_comm.traffic, new_comm.phase_s, new_comm.collective_spans = comm.traffic, comm.phase_s, comm.collective_spans
    fresh = build(new_comm)
    step = comm.traffic.step
    comm.traffic.step = STEP
    fresh.cache = move_kv(decoder.cache, comm.layout, new_layout, new_comm, decoder.next_position,
                          decoder.arch.num_kv_heads)
    comm.traffic.step = step
    fresh.options, fresh.next_position, fresh.steps = decoder.options, decoder.next_position, decoder.steps
    return fresh


# ---------------------------------------------------------------- what a re-shard run counted


def report(job, per_rank) -> tuple[str, list[int], dict]:
    """(line, bytes each known rank sent, summary fields) of a re-shard run: what the ranks' records count in
    ``kv_reshard`` (``per_rank[rank][run]``; under torchrun rank 0's only). helix.validation.traffic holds
    the bytes against the simulator's."""
    r = job.runs[0].reshard
    old, new = job.layout, r.layout(job.layout)
    tokens = job.prompt_ids.shape[1] + r.at_step
    sent = [sum(x.n_bytes for x in ranks[0].traffic if x.step == STEP and x.phase == PHASE) for ranks in per_rank]
    line = (f"re-shard before decode step {r.at_step} ({tokens} cached tokens): {old.describe()} -> {new.describe()}, "
            f"{PHASE} all-to-all sent {' + '.join(map(str, sent))} = {sum(sent):,} bytes")
    return line, sent, {"reshard_at": r.at_step, "reshard_layout": new.describe(), "reshard_bytes_sent": sent}
