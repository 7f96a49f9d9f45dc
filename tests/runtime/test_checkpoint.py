"""``helix run --checkpoint DIR --prompt TEXT``: a checkpoint the test writes itself (a tiny random
LlamaForCausalLM via save_pretrained, a WordLevel tokenizer trained offline on a few sentences), decoded
with Helix and checked against Hugging Face; bad input is one line, exit 2, before anything is spawned."""

from __future__ import annotations

import json
import os

import pytest
import torch

from helix.cli import main

SENTENCES = ["hello world", "the cat sat on the mat", "helix decodes with many gpus",
             "a world of long context", "the dog ran to the cat"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[EOS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]")


def _model(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                      initializer_range=0.2, tie_word_embeddings=False, eos_token_id=1, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(directory with weights + tokenizer, directory with weights only)."""
    root = tmp_path_factory.mktemp("ckpt")
    tok = _tokenizer()
    model = _model(len(tok))
    full, bare = root / "tiny", root / "bare"
    model.save_pretrained(full, safe_serialization=True)
    tok.save_pretrained(full)
    model.save_pretrained(bare, safe_serialization=True)
    return str(full), str(bare)


@pytest.mark.slow
def test_run_on_a_saved_checkpoint_matches_hf_and_prints_the_text(checkpoint, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    full, _ = checkpoint
    argv = ["run", "--checkpoint", full, "--prompt", "the cat sat on the", "--kvp", "2", "--tpa", "2",
            "--new-tokens", "5", "--block-tokens", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    # the reference computed here, independently of helix: HF greedy over the same ids, EOS not stopping it
    tok = AutoTokenizer.from_pretrained(full)
    hf = AutoModelForCausalLM.from_pretrained(full, dtype=torch.float32).eval()
    ids = torch.tensor([tok("the cat sat on the")["input_ids"]])
    assert ids.shape == (1, 5)
    with torch.no_grad():
        ref = hf.generate(ids, max_new_tokens=5, min_new_tokens=5, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[0, 5:]
    text = tok.decode(ref.tolist(), skip_special_tokens=True)
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    assert (summary["model"], summary["checkpoint"]) == ("tiny", full)
    assert (summary["batch"], summary["prompt_len"], summary["kvp"], summary["tpa"]) == (1, 5, 2, 2)
    assert summary["text"] == text and summary["prompt"] == "the cat sat on the"
    assert f"generated: {text!r}" in out and "helix run: tiny, " in out
    # 5 prompt + 4 fed-back tokens in blocks of 2 over KVP 2: blocks 0, 2, 4 (5 tokens) and 1, 3 (4 tokens)
    assert summary["kv_tokens_per_rank"] == [5, 5, 4, 4]


@pytest.mark.slow
def test_run_json_prints_only_the_summary_object(checkpoint, capsys):
    full, _ = checkpoint
    assert main(["run", "--checkpoint", full, "--kvp", "2", "--batch", "2", "--prompt-len", "6",
                 "--new-tokens", "3", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    summary = json.loads(out)
    assert summary["tokens_match_hf"] is True and (summary["batch"], summary["prompt_len"]) == (2, 6)
    assert "text" not in summary  # no --prompt: random ids, nothing to decode


def _no_spawn(*_args, **_kwargs):
    raise AssertionError("a worker was spawned for bad input")


@pytest.mark.parametrize("case, argv, message", [
    ("missing", ["--checkpoint", "{tmp}/nowhere"], "--checkpoint: '{tmp}/nowhere': not found"),
    ("no_config", ["--checkpoint", "{tmp}"], "--checkpoint: '{tmp}' has no config.json"),
    ("gpt2", ["--checkpoint", "{tmp}"], "--checkpoint: model_type 'gpt2' in {tmp}/config.json is not a runtime "
                                        "family; allowed: llama, deepseek_v3, deepseek_v32"),
    ("bare", ["--checkpoint", "{bare}", "--prompt", "hello"], "--prompt: needs the checkpoint's tokenizer"),
    ("full", ["--checkpoint", "{full}", "--model", "tiny-llama"], "--model: names a preset and --checkpoint"),
    ("full", ["--checkpoint", "{full}", "--prompt", "hello", "--prompt-len", "4"],
     "--prompt-len: shapes the random prompt, which --prompt replaces"),
    ("full", ["--prompt", "hello"], "--prompt: needs --checkpoint DIR (a tokenizer)"),
    ("full", ["--model", "{full}"], "--model: names a preset, got the path"),
    ("full", ["--checkpoint", "{full}", "--prompt", "   "], "--prompt: '   ' encodes to no tokens"),
])
def test_bad_checkpoint_input_exits_2_with_one_line_before_spawning(checkpoint, tmp_path, monkeypatch, capsys,
                                                                   case, argv, message):
    import helix.runtime.launch as launch

    monkeypatch.setattr(launch, "spawn", _no_spawn)
    if case == "gpt2":
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    names = {"tmp": str(tmp_path), "full": checkpoint[0], "bare": checkpoint[1]}
    argv = [a.format(**names) for a in argv]
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helix run: error: " + message.format(**names)) and err.count("\n") == 1, err
    assert not os.path.exists(os.path.join(names["tmp"], "nowhere"))


@pytest.mark.slow
@pytest.mark.parametrize("build, model_type", [("deepseek_hf:tiny_deepseek", "deepseek_v3"),
                                               ("deepseek_v32:tiny_deepseek_v32", "deepseek_v32")])
def test_run_on_saved_deepseek_checkpoints(tmp_path, capsys, build, model_type):
    """The MLA + MoE families from their saved files: config.json's model_type picks the decoder."""
    import importlib

    module, name = build.split(":")
    getattr(importlib.import_module(f"helix.runtime.{module}"), name)(seed=0).save_pretrained(tmp_path / "ds")
    assert json.loads((tmp_path / "ds" / "config.json").read_text())["model_type"] == model_type
    assert main(["run", "--checkpoint", str(tmp_path / "ds"), "--kvp", "2", "--ep", "2", "--batch", "2",
                 "--prompt-len", "9", "--new-tokens", "3", "--block-tokens", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens_match_hf"] is True and summary["traffic_matches_simulator"] is True
    assert (summary["model"], summary["ep"], summary["tpf"]) == ("ds", 2, 1)
    # 2 decode steps x 2 requests x top-4 experts in every MoE layer
    assert [sum(row) for row in summary["expert_load_decode"]] == [16] * len(summary["expert_load_decode"])
