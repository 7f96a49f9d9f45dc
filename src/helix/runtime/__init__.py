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
- ``dsa``, ``dsa_messages``, ``deepseek_v32``: DeepSeek-V3.2's sparse attention (lightning indexer,
  exact global top-k over KVP, its exchange's bytes) on the DeepSeek-V3 decoder;
- ``registry``: runtime model presets and families; ``launch``: jobs, spawned CPU workers, torchrun;
- ``command``: ``helix run``.
- ``quantise``, ``precision_spec``, ``precision_error``: the precision study (``helix precision``): FP8 / NVFP4 /
  MXFP4 / BF16 KV caches and payloads through ``local_attention`` and ``combine_partial_attention``.

This package's ``__init__`` and ``command`` import nothing heavy (``helix`` imports ``command`` at
start-up); the other modules need torch; transformers is needed only to build registry models.
"""
