"""The per-rank runtime probe: decode steps of a minimal Llama, every op fixed cost (torch worker code).

helix.validation.profile turns the probe's times at 1 and 4 layers into ``kernel_launch_s`` (the slope
per layer over the launches helix.step charges) and ``step_overhead_s`` (the intercept).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from helix.layout import Layout
from helix.runtime import llama
from helix.runtime.comm import Comm
from helix.runtime.decoder import DecodeOptions
from helix.runtime.registry import _llama
from helix.validation.measurement import Measurement
from helix.validation.timing import robust_median_s

RUNTIME_PROBE_LAYERS = (1, 4)
WARMUP_STEPS = 5


def measure_runtime_step(layers: int, repeats: int, kvp: int = 1) -> Measurement:
    """Median decode step of a minimal Llama (H = 64, K = 4, Hsz = 8, F = 64, V = 64; Q = 8, or KVP x
    ceil(8 / KVP) so that the heads split) with ``layers`` layers, B = 1, an 8-token context: every op
    is fixed cost (launch, dispatch, Python).

    ``kvp`` = 1: one rank alone. ``kvp`` > 1: every rank of the initialised process group runs its
    shard of a Helix KVP = ``kvp`` decode, the code path of a multi-rank point (packing, the exchange's
    wrappers, the combine, vocab-parallel head); the time inside blocking collectives, which the
    simulator charges separately, is taken out of every step.
    """
    heads = kvp * -(-8 // kvp)
    hf = _llama(seed=0, vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=4, head_dim=8, max_position_embeddings=4096)
    arch = llama.arch_from_hf_config(hf.config)
    if kvp == 1:
        comm = Comm.create(Layout.helix(kvp=1, tpa=1), 0, 1, "env://")
    else:
        comm = Comm.create(Layout.helix(kvp=kvp, tpa=1), dist.get_rank(), kvp)  # joins the existing group
    decoder = llama.HelixLlama(arch, {k: v.detach() for k, v in hf.state_dict().items()}, comm, name="probe")
    tokens = decoder.prefill(torch.zeros(1, 8, dtype=torch.int64), DecodeOptions()).next_tokens
    samples = []
    for i in range(WARMUP_STEPS + repeats):  # as the runtime runs (helix.validation.validate: no inference mode)
        comm.collective_spans.clear()
        t0 = time.perf_counter()
        tokens = decoder.decode_step(tokens).next_tokens
        if i >= WARMUP_STEPS:
            in_collectives = sum(exit_s - entry_s for _, entry_s, exit_s in comm.collective_spans)
            samples.append(time.perf_counter() - t0 - in_collectives)
    return Measurement("runtime_step", "fp32", f"{layers} layers B=1 S=8", 0.0, 0.0, 1, robust_median_s(samples), 0.0,
                       repeats)
