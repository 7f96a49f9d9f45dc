"""Helix decoding on torch.distributed: a readable reference, checked against Hugging Face.

Read in this order (docs/runtime.md is the guide):

- ``comm``: process groups from ``helix.layout.Layout`` (attention and FFN families); explicit,
  recorded collectives;
- ``attention``: local attention with LSE, the KVP all-to-all, the exact combine, HOP-B (one loop
  for every attention kind, given an ``attend`` callable);
- ``kv_cache``: sequence-sharded KV cache, ownership rules (round-robin blocks, contiguous, last rank);
- ``decoder``: the family-independent interface (prefill, decode_step, generate), vocab-parallel
  embedding and greedy LM head;
- ``llama``: the dense GQA decoder (KVP x TPA attention, TP = N O-projection, TPF = N FFN);
- ``mla``, ``moe``, ``deepseek``: the DeepSeek-V3 decoder (absorbed MLA over KVP; MoE as Helix
  TPF x EP or the DP+EP baseline);
- ``dsa``, ``deepseek_v32``: DeepSeek-V3.2's sparse attention (lightning indexer, exact global top-k
  over KVP; the exchange's format is helix.specs.dsa's) on the DeepSeek-V3 decoder;
- ``registry``: runtime model presets and families; ``launch``: jobs, spawned CPU workers, torchrun;
- ``reshard``: re-sharding a live KV cache mid-generation;
- ``quantise``, ``precision_spec``, ``precision_error``: the precision study (``helix precision``): FP8 / NVFP4 /
  MXFP4 / BF16 KV caches and payloads through ``local_attention`` and ``combine_partial_attention``.

It reads helix.specs and helix.layout only: the simulator's formulas stay out of it, and
what it counts is compared with them in helix.validation.traffic. ``helix run`` is
helix.commands.run. This package's ``__init__``, ``checkpoint`` and ``model_entry`` (the
registry's entry type) import nothing heavy; the other modules need torch; transformers is needed
only to build registry models.
"""
