"""`helix best --emit trtllm|vllm|sglang --out DIR`: each engine's parallel sizes multiply to the GPU count and
match the printed layout (or the nearest layout the engine can run, said so, with its TTL beside ours)."""

import json
import shlex

import pytest
import yaml

from helix import engines, load_hardware, load_model, simulate
from helix.layout import Layout

DSR1 = load_model("deepseek-r1")
LLAMA = load_model("llama-3.1-405b")
DONE_WHEN = ("best", "--model", "deepseek-r1", "--context", "1M", "--total-gpus", "64", "--tpot-ms", "20")


def shell_flags(text: str) -> dict:
    """The flags of the launch command in a vllm.sh / sglang.sh: {'--tp-size': '8', '--enable-dp-attention': True}."""
    command = text.split("exec ", 1)[1].replace("\\\n", " ")
    words, flags = shlex.split(command), {}
    for i, w in enumerate(words):
        if w.startswith("--") and w != "--model-path":
            nxt = words[i + 1] if i + 1 < len(words) else ""
            flags[w] = nxt if nxt.isdigit() else True
    return flags


def layout_of(fields: dict) -> Layout:
    return Layout(**fields)


def emitted(tmp_path, cli, engine):
    out = tmp_path / f"d-{engine}"
    code, text, err = cli(*DONE_WHEN, "--emit", engine, "--out", str(out), "--json")
    assert code == 0, err
    d = json.loads(text)
    rec = json.loads((out / "helix-layout.json").read_text())
    assert d["emitted"]["engines"] == rec["engines"]
    ours = d["most_tokens_per_s_per_gpu"]
    assert rec["layout"] == ours["layout"] and rec["num_gpus"] == 64
    return out, rec, rec["engines"][engine], layout_of(ours["layout_fields"])


def check_nearest(e, ours: Layout, rec):
    """A layout the engine cannot run is said so, and the emitted layout's TTL is the simulator's at that batch."""
    if e["exact"]:
        assert e["layout_fields"] == rec["layout_fields"] and e["note"] is None
        return layout_of(e["layout_fields"])
    assert "cannot run" in e["note"] and "nearest layout" in e["note"]
    theirs = layout_of(e["layout_fields"])
    assert theirs.num_gpus == ours.num_gpus == 64
    r = simulate(DSR1, load_hardware("gb200-nvl72"), theirs, rec["batch_size"], 10**6)
    assert e["ttl_ms"] == pytest.approx(r.ttl_s * 1e3, rel=1e-9)
    return theirs


def test_done_when_trtllm(tmp_path, cli):
    out, rec, e, ours = emitted(tmp_path, cli, "trtllm")
    cfg = yaml.safe_load((out / "trtllm.yaml").read_text())
    assert cfg["tensor_parallel_size"] * cfg["context_parallel_size"] * cfg["pipeline_parallel_size"] == 64
    lay = check_nearest(e, ours, rec)
    assert cfg["context_parallel_size"] == lay.kvp and cfg["pipeline_parallel_size"] == lay.pp
    assert cfg["tensor_parallel_size"] == (lay.dp if cfg["enable_attention_dp"] else lay.tpa)
    assert cfg["moe_tensor_parallel_size"] * cfg["moe_expert_parallel_size"] == lay.gpus_per_stage
    assert (cfg["moe_tensor_parallel_size"], cfg["moe_expert_parallel_size"]) == (lay.tpf, lay.ep)
    if lay.kvp > 1:
        assert cfg["cp_config"] == {"cp_type": "HELIX", "tokens_per_block": 32}
        assert cfg["kv_cache_config"]["tokens_per_block"] == cfg["cp_config"]["tokens_per_block"]


def test_done_when_vllm(tmp_path, cli):
    out, rec, e, ours = emitted(tmp_path, cli, "vllm")
    f = shell_flags((out / "vllm.sh").read_text())
    tp, dp, pp = (int(f[k]) for k in ("--tensor-parallel-size", "--data-parallel-size", "--pipeline-parallel-size"))
    assert tp * dp * pp == 64
    lay = check_nearest(e, ours, rec)
    assert (tp, dp, pp, int(f["--decode-context-parallel-size"])) == (lay.tpa * lay.kvp, lay.dp, lay.pp, lay.kvp)
    assert tp % int(f["--decode-context-parallel-size"]) == 0
    assert ("--enable-expert-parallel" in f) == (lay.ep > 1)
    assert (lay.tpf, lay.ep) in ((tp * dp, 1), (1, tp * dp))


def test_done_when_sglang(tmp_path, cli):
    out, rec, e, ours = emitted(tmp_path, cli, "sglang")
    f = shell_flags((out / "sglang.sh").read_text())
    tp, dp, pp, dcp, ep = (int(f[k]) for k in ("--tp-size", "--dp-size", "--pp-size", "--dcp-size", "--ep-size"))
    assert tp * pp == 64
    lay = check_nearest(e, ours, rec)
    assert (tp, dp, pp, dcp, ep) == (lay.gpus_per_stage, lay.dp, lay.pp, lay.kvp, lay.ep)
    assert ("--enable-dp-attention" in f) == (dp > 1) and (tp // dp) % dcp == 0 and tp // ep == lay.tpf


def test_all_three_and_the_table(tmp_path, cli):
    out = tmp_path / "all"
    code, text, _ = cli(*DONE_WHEN, "--emit", "trtllm,vllm,sglang", "--out", str(out))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [".helix-output.json", "helix-layout.json", "sglang.sh",
                                                    "trtllm.yaml", "vllm.sh"]
    assert "== Engine configs for helix(" in text and "trtllm.yaml" in text and "vllm.sh" in text
    # vLLM cannot run the TPF x EP MoE split the chosen layout uses (TPF 8 x EP 4): said in the output
    rec = json.loads((out / "helix-layout.json").read_text())
    if rec["layout_fields"]["tpf"] > 1 and rec["layout_fields"]["ep"] > 1:
        assert "NOTE: vLLM cannot run" in text and "NOTE: vLLM cannot run" in (out / "vllm.sh").read_text()
    # a second run replaces the folder (it holds an earlier result)
    assert cli(*DONE_WHEN, "--emit", "sglang", "--out", str(out))[0] == 0
    assert not (out / "vllm.sh").exists() and (out / "sglang.sh").exists()


def test_engine_rules():
    helix_adp = Layout.helix(kvp=8, tpa=1, dp=8, ep=64)
    s = engines.engine_settings("trtllm", helix_adp, DSR1)
    assert s.sizes["tensor_parallel_size"] == 8 and s.sizes["enable_attention_dp"] is True
    assert s.sizes["context_parallel_size"] == 8 and s.sizes["moe_expert_parallel_size"] == 64
    with pytest.raises(engines.InexpressibleError, match="enable_attention_dp"):
        engines.engine_settings("trtllm", Layout.helix(kvp=4, tpa=2, dp=2), LLAMA)
    for engine in engines.ENGINES:
        with pytest.raises(engines.InexpressibleError, match="Medha"):
            engines.engine_settings(engine, Layout.medha(kvp=4, tp=2), LLAMA)
    with pytest.raises(engines.InexpressibleError, match="all as TP or all as EP"):
        engines.engine_settings("vllm", Layout.helix(kvp=32, tpf=8, ep=4, pp=2), DSR1)
    v = engines.engine_settings("vllm", Layout.helix(kvp=8, dp=8, tpf=1, ep=64), DSR1)
    assert v.sizes == {"--tensor-parallel-size": 8, "--decode-context-parallel-size": 8, "--data-parallel-size": 8,
                       "--pipeline-parallel-size": 1, "--enable-expert-parallel": True} and v.world_size == 64
    # GQA (8 KV heads): vLLM bounds DCP by TP / KV heads, SGLang's DCP is MLA only
    with pytest.raises(engines.InexpressibleError, match="KV heads"):
        engines.engine_settings("vllm", Layout.helix(kvp=4, tpa=4), LLAMA)
    assert engines.engine_settings("vllm", Layout.helix(kvp=2, tpa=8), LLAMA).sizes["--tensor-parallel-size"] == 16
    with pytest.raises(engines.InexpressibleError, match="MLA"):
        engines.engine_settings("sglang", Layout.helix(kvp=2, tpa=8), LLAMA)
    g = engines.engine_settings("sglang", Layout.dp_ep(16, tpf=2), DSR1)
    assert (g.sizes["--tp-size"], g.sizes["--dp-size"], g.sizes["--ep-size"]) == (16, 16, 8)
    assert g.sizes["--enable-dp-attention"] is True


@pytest.mark.parametrize("argv,field", [
    (("--emit", "tensorrt"), "--emit"),
    (("--emit", "vllm"), "--emit"),
    (("--out", "X"), "--out"),
    (("--emit", "vllm", "--out", "FILE"), "--out"),
])
def test_bad_emit_one_line_exit_2_nothing_written(tmp_path, cli, argv, field):
    (tmp_path / "a-file").write_text("x")
    argv = tuple(str(tmp_path / "new") if a == "X" else str(tmp_path / "a-file") if a == "FILE" else a for a in argv)
    code, out, err = cli(*DONE_WHEN, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and f"error: {field}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_what_the_prediction_assumes_beyond_the_sizes_is_named_not_set(tmp_path, cli):
    # two-batch overlap and EPLB's redundant experts change the prediction but are no parallel size: the
    # file, the output and the manifest say the deployment must set them itself
    out = tmp_path / "tbo"
    code, text, err = cli("best", "--model", "deepseek-r1", "--hardware", "h100", "--engine", "sglang", "--context",
                          "2000", "--strategies", "dp_ep", "--max-gpus", "16", "--ttl-budget-ms", "100",
                          "--precision", "fp8", "--redundant-experts", "16", "--tbo", "--emit", "sglang",
                          "--out", str(out))
    assert code == 0, err
    said = "two-batch overlap, 16 redundant experts (EPLB)"
    assert f"# NOT SET HERE: the prediction assumes {said}; set them in the engine too" in \
        (out / "sglang.sh").read_text()
    assert f"NOT SET in the files: the prediction assumes {said}" in text
    assert json.loads((out / "helix-layout.json").read_text())["assumed_not_set"] == [
        "two-batch overlap", "16 redundant experts (EPLB)"]
    # without such options nothing is said
    plain = tmp_path / "plain"
    code, text, err = cli(*DONE_WHEN, "--emit", "sglang", "--out", str(plain))
    assert code == 0, err
    assert "NOT SET" not in (plain / "sglang.sh").read_text() and "NOT SET" not in text
    assert json.loads((plain / "helix-layout.json").read_text())["assumed_not_set"] == []
