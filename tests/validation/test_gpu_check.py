"""``helix gpu-check --cpu-smoke``: the single-GPU check's pipeline on a CPU, and its split-KV attention exact."""

from __future__ import annotations

import csv

import pytest
import torch

from helix.cli import main
from helix.specs.hardware import load_hardware
from helix.validation.gpu_points import split_kv_decode


def test_gpu_check_cpu_smoke(tmp_path):
    assert main(["gpu-check", "--out", str(tmp_path), "--cpu-smoke"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["gpu_validation.csv", "gpu_validation.md", "gpu_validation.png", "profile-cpu-smoke.yaml"]
    hw = load_hardware(tmp_path / "profile-cpu-smoke.yaml")
    assert hw.name == "h100-measured" and hw.hbm_efficiency == 1.0
    with open(tmp_path / "gpu_validation.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["op"] for r in rows} == {"gqa_attention", "mla_attention", "decode_gemm"}
    for r in rows:
        meas, pred = float(r["measured_us"]), float(r["pred_h100_us"])
        assert float(r["err_h100"]) == pytest.approx((pred - meas) / meas, rel=1e-4)
    assert "CPU smoke run" in (tmp_path / "gpu_validation.md").read_text()


def test_split_kv_decode_is_exact():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 4, 16, generator=g), torch.randn(2, 2, 64, 16, generator=g),
               torch.randn(2, 2, 64, 16, generator=g))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(split_kv_decode(q, k, v, 8, "math"), want, rtol=1e-5, atol=1e-5)


def test_gpu_check_without_a_gpu_is_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cpu-smoke" in err[0] and "no CUDA device" in err[0], err
    assert not (tmp_path / "out").exists()
