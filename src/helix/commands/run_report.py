"""``helix run``'s report: step times, KV per rank, the traffic table, expert loads, HOP-B, a re-shard's bytes,
the match against Hugging Face, then one line of JSON.

What the runtime counted comes from its workers' results (helix.runtime.launch.RunResult); the simulator's
side of every comparison is helix.validation.traffic's. Printed on rank 0 only (every rank's results when
spawned, rank 0's alone under torchrun).
"""

from __future__ import annotations

import json
import os
import statistics


def report(args, job, payload, hf, per_rank, launcher: str, tok=None) -> int:
    """Print the report from ``per_rank[rank][run]``; exit code 0 when tokens and traffic match, else 1."""
    import torch

    from helix.runtime.registry import family
    from helix.validation import traffic

    layout, results = job.layout, per_rank[0]
    base = results[0]
    with torch.no_grad():
        reference = hf.generate(job.prompt_ids, max_new_tokens=args.new_tokens, do_sample=False,
                                min_new_tokens=args.new_tokens)[:, job.prompt_ids.shape[1]:]
    match = all(torch.equal(r.tokens, reference) for r in results)
    name = os.path.basename(args.model) if args.checkpoint else args.model
    print(f"helix run: {name}, {layout.describe()}, {launcher}, batch {args.batch}, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, KV {args.ownership} (block {args.block_tokens})")
    mean_ms = _print_steps(base)
    fam = family(payload.family)
    spec = fam.model_spec(payload.arch, args.model)
    lines, rows, exact = traffic.step_table(spec, layout, args.batch, [ranks[0].traffic for ranks in per_rank],
                                            getattr(fam, "DATA_DEPENDENT_PHASES", ()))  # DSA's tie gather
    print("\n".join(lines))
    summary = {"model": name, "strategy": layout.strategy, "kvp": layout.kvp, "tpa": layout.tpa,
               "dp": layout.dp, "tpf": layout.tpf, "ep": layout.ep, "batch": args.batch,
               "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "step_ms_mean": round(mean_ms, 3),
               "kv_tokens_per_rank": base.kv_tokens, "collectives": rows, "traffic_matches_simulator": exact,
               "tokens_match_hf": match}
    _expert_loads(base, spec, summary)
    if args.hopb:
        _hopb(args, results, mean_ms, summary)
    if job.runs[0].reshard is not None:
        moved_ok = _reshard(job, payload, per_rank, summary)
        exact = exact and moved_ok
    print(f"tokens match Hugging Face generate (single device): {'yes' if match else 'NO'}")
    if args.checkpoint:
        summary["checkpoint"] = args.model
    if tok is not None:
        summary.update(prompt=args.prompt, text=tok.decode(base.tokens[0].tolist(), skip_special_tokens=True))
        print(f"prompt: {args.prompt!r}\ngenerated: {summary['text']!r}")
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if match and exact else 1


def _print_steps(base) -> float:
    """Prefill and per-step decode times, and KV tokens per rank, of rank 0's first run; returns the mean step ms."""
    step_ms = [1e3 * s for s in base.step_s]
    print(f"prefill ms: {1e3 * base.prefill_s:.1f}")
    print("decode step ms (rank 0): " + " ".join(f"{t:.1f}" for t in step_ms))
    mean_ms = statistics.mean(step_ms) if step_ms else float("nan")
    print(f"  mean {mean_ms:.2f}  median {statistics.median(step_ms) if step_ms else float('nan'):.2f}")
    print("KV tokens per rank (S_loc): " + " ".join(f"r{r}={n}" for r, n in enumerate(base.kv_tokens)))
    return mean_ms


def _expert_loads(base, spec, summary: dict) -> None:
    """A MoE model's expert load per step (printed) and summed over decode (into ``summary``)."""
    import torch

    loads = base.extras.get("expert_loads")
    if loads:
        from helix.runtime.moe import expert_load_lines

        for line in expert_load_lines(loads, spec.num_dense_layers):
            print(line)
        decode = [load for step, load in loads.items() if step.startswith("decode")]
        if decode:
            total = torch.stack(decode).sum(dim=0)  # [MoE layers, E]
            summary["expert_load_decode"] = total.tolist()
            summary["expert_load_hottest_to_mean"] = [round(float(r.max() / r.float().mean()), 3) for r in total]


def _hopb(args, results, mean_ms: float, summary: dict) -> None:
    """The HOP-B run's mean step time beside the plain run's, and whether its tokens are the same."""
    import torch

    hopb_ms = statistics.mean(1e3 * s for s in results[1].step_s) if results[1].step_s else float("nan")
    same = torch.equal(results[1].tokens, results[0].tokens)
    print(f"HOP-B: decode step mean {mean_ms:.2f} ms without, {hopb_ms:.2f} ms with "
          f"({args.hopb_chunks or args.batch} chunks); same tokens: {'yes' if same else 'NO'}")
    summary.update(step_ms_mean_hopb=round(hopb_ms, 3), hopb_same_tokens=same)


def _reshard(job, payload, per_rank, summary: dict) -> bool:
    """The re-shard's line and its check against the simulator's bytes; True when they match."""
    from helix.runtime import reshard
    from helix.validation import traffic

    line, sent, fields = reshard.report(job, per_rank)
    end, moved_ok, checked = traffic.reshard_check(job, payload.arch, sent)
    print(line + end)
    summary.update(fields, **checked)
    return moved_ok
