"""The precision study's quantisers against hand-rounded values, and its error through the runtime's combine."""

import csv
import json
import math

import pytest
import torch

from helix.cli import main
from helix.runtime import precision_error as pe
from helix.runtime.precision_spec import Study, SyntheticKV
from helix.runtime.quantise import fp8_row, fp8_tensor, mxfp4, nvfp4, quantise, round_e2m1, round_e4m3


def _t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_e4m3_grid_by_hand():
    # 0.0703125 = 1.125 * 2^-4 is on the grid; 0.07 is 8.96 quanta of 2^-7 -> 9 quanta = 0.0703125;
    # 9.5 and 8.5 quanta tie to the even 10 and 8; 2^-10 is half the subnormal quantum 2^-9 (ties to 0), 3 * 2^-10
    # is 1.5 quanta (ties to 2 quanta = 2^-8);
    # 464 is halfway between 448 and 480 (even: 448); 470 rounds to 480, which E4M3 lacks: saturates at 448
    x = _t([448, 0.0703125, 0.07, 9.5 / 128, 8.5 / 128, 2**-10, 3 * 2**-10, 464, 470, -1000, 0])
    want = _t([448, 0.0703125, 0.0703125, 10 / 128, 8 / 128, 0, 2**-8, 448, 448, -448, 0])
    assert torch.equal(round_e4m3(x), want)


def test_e4m3_matches_torch_float8_on_a_wide_range():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * torch.logspace(-5, 3, 20000)
    assert torch.equal(round_e4m3(x), x.clamp(-448, 448).to(torch.float8_e4m3fn).float())


def test_e2m1_grid_by_hand():
    grid = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert torch.equal(round_e2m1(_t(grid)), _t(grid))
    assert torch.equal(round_e2m1(-_t(grid)), -_t(grid))
    # ties to the even neighbour: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4; 5.5 -> 6
    x = _t([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 5.5, 7, 100, -3.2, 0.2])
    assert torch.equal(round_e2m1(x), _t([0, 1, 1, 2, 2, 4, 4, 6, 6, 6, -3, 0]))


NVFP4_BLOCK = [12, -12, 1, 0.5, 3, 5, 7, 9, 0, 0.2, 2.4, -4.5, 10, 11, 6, 8]
# tensor amax 2688 = 448 * 6 sets the fp32 tensor scale to 1; the block amax 12 gives the E4M3 block scale
# 12 / 6 = 2; x / 2 = [6, -6, .5, .25, 1.5, 2.5, 3.5, 4.5, 0, .1, 1.2, -2.25, 5, 5.5, 3, 4] onto E2M1, times 2
NVFP4_BY_HAND = [12, -12, 1, 0, 3, 4, 8, 8, 0, 0, 2, -4, 8, 12, 6, 8]


def test_nvfp4_block_by_hand():
    assert torch.equal(nvfp4(_t(NVFP4_BLOCK), 2688.0), _t(NVFP4_BY_HAND))
    # a tensor scale of 1/4 (amax 672) on the block scaled by 1/4: every step is a power of two, exact
    assert torch.equal(nvfp4(_t(NVFP4_BLOCK) / 4, 672.0), _t(NVFP4_BY_HAND) / 4)
    # the block scale itself is rounded onto E4M3: amax 13.2 -> 13.2 / 6 = 2.2 -> 2.25 (quantum 0.25);
    # 13.2 / 2.25 = 5.87 -> 6 -> 13.5
    assert float(nvfp4(_t([13.2] + [0] * 15), 2688.0)[0]) == 13.5


def test_mxfp4_block_by_hand():
    # amax 12: floor(log2 12) = 3, scale 2^(3 - 2) = 2, the same E2M1 rounding as the NVFP4 block above
    x = _t(NVFP4_BLOCK * 2)
    assert torch.equal(mxfp4(x), _t(NVFP4_BY_HAND * 2))
    # amax 13.2: also scale 2; 13.2 / 2 = 6.6 saturates at 6 -> 12 (the power-of-two scale cannot fit it)
    assert float(mxfp4(_t([13.2] + [0] * 31))[0]) == 12.0


def test_fp8_scales_by_hand():
    # one row of 128 with amax 896: scale 2; 100 / 2 = 50 is 12.5 quanta of 4 in [32, 64): ties to the even 12,
    # 48, times the scale 2 = 96
    row = torch.zeros(128)
    row[0], row[1] = 896, 100
    got = fp8_row(row)
    assert float(got[0]) == 896 and float(got[1]) == 96
    # per tensor: amax 4480 -> scale 10; 100 / 10 = 10 -> on the grid; 3 / 10 = 0.3 -> 0.3 / 2^-5 = 9.6 -> 10
    # quanta of 2^-5 -> 0.3125 -> 3.125
    assert torch.allclose(fp8_tensor(_t([100, 3]), 4480.0), _t([100, 3.125]))
    assert torch.equal(quantise(_t([1.0, 2.0]), "fp32"), _t([1.0, 2.0]))


def test_student_t4_quantile_matches_the_table():
    # t(4) quantiles from any t table: 0.9 -> 1.533, 0.975 -> 2.776, 0.995 -> 4.604; symmetric
    got = pe.student_t4_quantile(torch.tensor([0.5, 0.9, 0.975, 0.995, 0.025], dtype=torch.float64))
    assert torch.allclose(got, torch.tensor([0, 1.5332, 2.7764, 4.6041, -2.7764], dtype=torch.float64), atol=1e-3)


def test_no_quantisation_no_error_at_any_kvp():
    study = Study(contexts=(3000,), kvps=(1, 4, 16), kv_formats=("fp32",), payload_formats=("fp32",), seeds=(0,),
                  data=SyntheticKV(chunk_tokens=1000))
    rows = pe.run(study)
    assert len(rows) == 3
    for r in rows:  # fp32 round-off against the float64 reference, whatever the split
        assert r["rel_l2_max"] < 1e-5, r


def test_chunking_does_not_change_the_context():
    # the same tokens whatever the chunk size: chunk i is seeded by (seed, i), so compare a chunk of 1000 with
    # its own first 1000 tokens only (the same generator draws)
    spec = SyntheticKV(chunk_tokens=1000)
    k, v = pe.chunk(spec, 0, 0, 1000)
    k2, v2 = pe.chunk(spec, 0, 0, 1000)
    assert torch.equal(k, k2) and torch.equal(v, v2)
    assert float(k[:, :4].abs().mean()) > 10 * float(k[:, 4:].abs().mean())  # the outlier channels


def test_combine_of_quantised_partials_by_hand():
    # two ranks: o1 = [1, 0.3] with LSE 0, o2 = [0.5, -0.7] with LSE ln 3: weights 1/4, 3/4
    outs = torch.tensor([[[1.0, 0.3]], [[0.5, -0.7]]])  # [ranks, heads, D]
    lses = torch.tensor([[0.0], [math.log(3.0)]])
    exact = pe.helix_output(outs, lses, 2, "fp32")
    assert torch.allclose(exact, torch.tensor([[0.625, -0.45]]), atol=1e-7)
    # bf16: 0.3 -> 154/512 = 0.30078125, -0.7 -> -179/256 = -0.69921875
    got = pe.helix_output(outs, lses, 2, "bf16")
    assert torch.allclose(got, torch.tensor([[0.625, 0.25 * 0.30078125 - 0.75 * 0.69921875]]), atol=1e-7)
    # E4M3 per row: row 1 scale 1/448, 0.3 * 448 = 134.4 -> 128 (quantum 16) -> 2/7; row 2 scale 0.7/448,
    # 0.5 / 0.7 * 448 = 320 is on the grid: exact
    got = pe.helix_output(outs, lses, 2, "fp8_row")
    assert torch.allclose(got, torch.tensor([[0.625, 0.25 * 2 / 7 - 0.75 * 0.7]]), atol=1e-6)
    # KVP = 1 exchanges nothing: the payload format does not apply
    assert torch.equal(pe.helix_output(outs[:1], lses[:1], 1, "fp8_row"), outs[0])


def test_helix_precision_quick_writes_its_files(tmp_path, capsys):
    out = tmp_path / "precision"
    code = main(["precision", "--quick", "--contexts", "2K", "--kv-formats", "fp32,nvfp4", "--payload-formats",
                 "fp32,bf16", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "KVP 64" in printed and "nvfp4" in printed
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "precision.csv", "precision.json", "precision.png", "precision_seeds.csv"]
    rows = list(csv.DictReader(open(out / "precision.csv")))
    assert len(rows) == 2 * 4 * 2  # KV formats x KVP (1, 2, 8, 64) x payloads
    exact = [r for r in rows if r["kv_format"] == "fp32" and r["payload_format"] == "fp32"]
    assert all(float(r["rel_l2_worst"]) < 1e-5 for r in exact)
    nvfp4_kv = [float(r["rel_l2_mean"]) for r in rows if r["kv_format"] == "nvfp4"]
    assert min(nvfp4_kv) > 1e-3  # a 4-bit cache is visibly not exact
    meta = json.loads((out / "precision.json").read_text())
    assert meta["kvps"] == [1, 2, 8, 64] and meta["seeds"] == [0]


@pytest.mark.parametrize("fmt", ["fp8_tensor", "nvfp4"])
def test_per_tensor_formats_need_the_amax(fmt):
    with pytest.raises(ValueError, match="amax"):
        quantise(_t([1.0] * 16), fmt)
