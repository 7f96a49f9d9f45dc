"""Calibration: the fits recover known alpha and beta, the profile loads, the CLI fails cleanly.

Synthetic timings are written out by hand from the alpha-beta forms (reference/hardware_models.md
§2.1), never by calling the fitting code's own design matrix.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from helix.cli import main
from helix.specs.hardware import hardware_from_mapping, load_hardware
from helix.specs.precision import PrecisionSpec
from helix.validation import calibrate as cal
from helix.validation import fit

SIZES = np.array([64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304], dtype=float)


# ---------------------------------------------------------------- fit_line


def test_fit_line_recovers_alpha_beta_exactly():
    alpha, beta = 35e-6, 1 / 2.5e9  # 35 us, 2.5 GB/s
    f = fit.fit_line(SIZES, alpha + beta * SIZES)
    assert f.coefficients["alpha"] == pytest.approx(alpha, rel=1e-9)
    assert f.coefficients["beta"] == pytest.approx(beta, rel=1e-9)
    assert f.max_abs_error < 1e-9


def test_fit_line_with_noise_stays_within_noise():
    rng = np.random.default_rng(0)
    alpha, beta = 80e-6, 1 / 4e9
    t = (alpha + beta * SIZES) * (1 + 0.02 * rng.standard_normal(SIZES.size))
    f = fit.fit_line(SIZES, t)
    assert f.coefficients["alpha"] == pytest.approx(alpha, rel=0.03)
    assert f.coefficients["beta"] == pytest.approx(beta, rel=0.03)
    assert 0.005 < f.median_abs_error < 0.04  # the residuals are the injected 2 % noise


def test_relative_fit_weighs_small_messages():
    # One 10x outlier at the largest size: relative LSQ keeps alpha, absolute LSQ does not.
    alpha, beta = 50e-6, 1e-9
    t = alpha + beta * SIZES
    t[-1] *= 1.5
    rel = fit.fit_line(SIZES, t, relative=True).coefficients["alpha"]
    ab = fit.fit_line(SIZES, t, relative=False).coefficients["alpha"]
    assert abs(rel - alpha) / alpha < 0.35
    assert abs(ab - alpha) / alpha > abs(rel - alpha) / alpha


# ---------------------------------------------------------------- collectives


def _synthetic(sync, ring_base, ring_hop, beta, ps=(2, 4, 8)):
    """Hand-written forms: AR ring, AG ring, A2A direct (n as helix.cost.collectives defines it)."""
    kinds, ns, groups, times = [], [], [], []
    for p in ps:
        for n in SIZES:
            kinds += ["all_reduce", "all_gather", "all_to_all"]
            ns += [n, n, n]
            groups += [p, p, p]
            times += [ring_base + 2 * (p - 1) * ring_hop + 2 * (p - 1) / p * n * beta,
                      ring_base + (p - 1) * ring_hop + (p - 1) / p * n * beta,
                      sync + (p - 1) / p * n * beta]
    return kinds, ns, groups, np.array(times)


def test_fit_collectives_recovers_every_term():
    truth = {"sync_latency_s": 40e-6, "ring_base_latency_s": 25e-6, "ring_hop_latency_s": 7e-6,
             "s_per_byte": 1 / 3e9}
    f = fit.fit_collectives(*_synthetic(*truth.values()))
    for k, v in truth.items():
        assert f.coefficients[k] == pytest.approx(v, rel=1e-6), k
    assert f.max_abs_error < 1e-6


def test_fit_collectives_two_ranks_separates_ring_base_and_hop():
    # p = 2 only: AR has 2 ring steps, AG one, so base and hop are still identifiable.
    truth = (30e-6, 60e-6, 20e-6, 1 / 1.5e9)
    f = fit.fit_collectives(*_synthetic(*truth, ps=(2,)))
    got = [f.coefficients[k] for k in fit.COLLECTIVE_TERMS]
    np.testing.assert_allclose(got, truth, rtol=1e-6)


def test_fit_collectives_with_noise():
    rng = np.random.default_rng(1)
    kinds, ns, groups, t = _synthetic(100e-6, 150e-6, 0.0, 1 / 1e9, ps=(2,))
    f = fit.fit_collectives(kinds, ns, groups, t * (1 + 0.03 * rng.standard_normal(t.size)))
    assert f.coefficients["s_per_byte"] == pytest.approx(1e-9, rel=0.05)
    assert f.coefficients["sync_latency_s"] == pytest.approx(100e-6, rel=0.08)
    assert f.coefficients["ring_base_latency_s"] + 2 * f.coefficients["ring_hop_latency_s"] == pytest.approx(
        150e-6, rel=0.08)


def test_nonnegative_lstsq_clamps_and_is_optimal():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    b = np.array([3.0, 2.0, 1.0])  # unconstrained slope -1: the best non-negative slope is 0
    x = fit.nonnegative_lstsq(a, b)
    np.testing.assert_allclose(x, [2.0, 0.0], atol=1e-12)  # mean of b with the slope clamped


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 points"):
        fit.fit_line([1.0], [1.0])
    with pytest.raises(ValueError, match="unknown collective kind 'broadcast'"):
        fit.collective_design(["broadcast"], [8], [2])
    with pytest.raises(ValueError, match="times must be > 0"):
        fit.fit_line([1.0, 2.0], [1.0, 0.0])


def test_summarize_errors():
    s = fit.summarize_errors(fit.relative_errors([1.1, 0.8, 2.0], [1.0, 1.0, 1.0]))
    assert s == pytest.approx({"median_abs": 0.2, "max_abs": 1.0, "median": 0.1, "points": 3})


# ---------------------------------------------------------------- profile


def _measurements():
    M = cal.Measurement
    rows = [M("launch", "fp32", "add", 12, 1, 1, 3e-6, 0.0, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 128e6 / 20e9, 20e9, 7),
            M("stream_read_all_ranks", "fp32", "128 MiB", 128e6, 0, 2, 128e6 / 15e9, 15e9, 7),
            M("gemv", "fp32", "1x4096x8192", 134e6, 6.7e7, 1, 134e6 / 12e9, 12e9, 7),
            M("decode_attention", "fp32", "B=4", 128e6, 1e8, 1, 128e6 / 8e9, 8e9, 7),
            M("decode_attention_all_ranks", "fp32", "B=4", 128e6, 1e8, 2, 128e6 / 4.5e9, 4.5e9, 7),
            M("matmul", "fp32", "large 1024^3", 1, 2 * 1024**3, 1, 2 * 1024**3 / 90e9, 90e9, 7),
            M("matmul", "bf16", "large 1024^3", 1, 2 * 1024**3, 1, 2 * 1024**3 / 200e9, 200e9, 7)]
    kinds, ns, groups, t = _synthetic(300e-6, 500e-6, 0.0, 1 / 2e9, ps=(2,))
    rows += [M(k, "fp32", f"{n} B", n, 0, p, ti, 0.0, 7) for k, n, p, ti in zip(kinds, ns, groups, t, strict=True)]
    return rows


def test_build_profile_maps_measurements_to_fields():
    profile, coll = cal.build_profile(_measurements(), name="test-cpu", cores=2)
    hw = hardware_from_mapping("test", profile)
    assert hw.hbm_bytes_per_s == pytest.approx(15e9, rel=1e-3)  # per rank with both ranks streaming
    assert hw.hbm_efficiency == pytest.approx(4.5e9 / 15e9, rel=1e-3)  # both at once: attention / streaming
    alone = hardware_from_mapping("alone", cal.single_rank_profile(profile, _measurements()))
    assert alone.hbm_bytes_per_s == pytest.approx(20e9, rel=1e-3)
    assert alone.hbm_efficiency == pytest.approx(8e9 / 20e9, rel=1e-3)  # a rank alone: attention / streaming
    assert hw.peak_flops_per_s_bf16 == pytest.approx(90e9, rel=1e-3)  # the fp32 rate, in the bf16 slot
    fp32 = PrecisionSpec.uniform("fp32").compute_class  # the runtime's fp32 runs in the bf16 slot
    assert hw.peak_flops_per_s(fp32) == pytest.approx(90e9, rel=1e-3)
    assert hw.kernel_launch_s == pytest.approx(3e-6, rel=1e-3)
    assert hw.link_bytes_per_s_per_direction == pytest.approx(2e9, rel=1e-3)
    assert hw.sync_latency_s == pytest.approx(300e-6, rel=1e-3)
    assert hw.ring_base_latency_s == pytest.approx(500e-6, rel=1e-3)
    assert hw.nvls_latency_s == 0.0 and hw.scale_up_domain_gpus == 2
    assert coll.max_abs_error < 1e-6
    for key in ("hbm_bytes_per_s", "kernel_launch_s", "link_bytes_per_s_per_direction", "sync_latency_s"):
        assert key in hw.empirical and len(hw.sources[key]) > 20, key
    assert "fp32" in hw.sources["peak_flops_per_s_bf16"]
    assert hw.comm_overlap_efficiency == 1.0 and "comm_overlap_efficiency" not in hw.empirical  # not measured
    assert "not measured" in hw.sources["comm_overlap_efficiency"]


def test_overlap_efficiency_by_hand():
    # a2a 2 ms, attention 3 ms: together 4 ms hides 1 of the shorter 2 ms (0.5); 5 ms hides none; 3 ms all
    np.testing.assert_allclose(cal.overlap_efficiency([2e-3] * 4, [3e-3] * 4, [4e-3, 5e-3, 3e-3, 6e-3]),
                               [0.5, 0.0, 1.0, 0.0])  # slower than serial clips to 0
    assert cal.overlap_efficiency(2e-3, 3e-3, 1e-3) == 1.0  # faster than the longer alone clips to 1


def test_build_profile_writes_measured_overlap():
    # two ranks, two sizes, 3 repetitions each: per-repetition times (a2a, attention, both) on each rank
    reps = {4096: [(2e-3, 2e-3, 3e-3), (2e-3, 2e-3, 4e-3), (2e-3, 2e-3, 3.5e-3)],  # eta 0.5, 0, 0.25
            262144: [(4e-3, 4e-3, 6e-3), (4e-3, 4e-3, 8e-3), (4e-3, 4e-3, 5e-3)]}  # eta 0.5, 0, 0.75
    rank = [{"n_bytes": nb, "tokens": 100, "times": list(t)} for nb, ts in reps.items() for t in ts]
    rows = cal.overlap_rows([rank, rank], world=2)
    by = {(m.what, m.n_bytes): m for m in rows}
    assert by[("overlap_both", 4096)].rate == pytest.approx(0.25)
    assert by[("overlap_both", 262144)].rate == pytest.approx(0.5)
    assert by[("comm_overlap", 0.0)].rate == pytest.approx(0.375)  # median of 0.5, 0, 0.25, 0.5, 0, 0.75
    profile, _ = cal.build_profile(_measurements() + rows, name="overlap", cores=2)
    hw = hardware_from_mapping("overlap", profile)
    assert hw.comm_overlap_efficiency == pytest.approx(0.375)
    assert "comm_overlap_efficiency" in hw.empirical
    assert "async_op=True" in hw.sources["comm_overlap_efficiency"]
    assert "4096 B a2a" in hw.sources["comm_overlap_efficiency"]


def test_profile_yaml_roundtrip(tmp_path):
    profile, _ = cal.build_profile(_measurements(), name="roundtrip", cores=2)
    path = tmp_path / "p.yaml"
    cal.write_atomic(path, cal.profile_yaml(profile))
    hw = load_hardware(path)
    assert hw.name == "roundtrip"
    assert hw.hbm_bytes_per_s == profile["hbm_bytes_per_s"]["value"]
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]  # no temporary left behind


# ---------------------------------------------------------------- CLI


class _Bar:
    """Stands in for helix.progress.bar: records what the command reports."""

    def __init__(self, total, desc, unit="it", quiet=False):
        self.total, self.desc, self.steps, self.labels = total, desc, 0, []
        _Bar.last = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix_str(self, text, refresh=True):
        self.labels.append(text)

    def update(self, n):
        self.steps += n


def test_calibrate_quick_cli_writes_a_loadable_profile(tmp_path, capsys, monkeypatch):
    import helix.progress

    monkeypatch.setattr(helix.progress, "bar", _Bar)
    out = tmp_path / "cpu.yaml"
    ranks = str(min(2, os.cpu_count() or 1))  # more ranks than cores is refused
    code = main(["calibrate", "--quick", "--out", str(out), "--max-ranks", ranks, "--name", "smoke"])
    assert code == 0
    # the progress bar: every stage once, in order, to its total
    assert (_Bar.last.desc, _Bar.last.total, _Bar.last.steps) == ("calibrate", 4, 4)
    assert _Bar.last.labels == ["compute", "collectives", "drifting rates", "fit"]
    hw = load_hardware(out)
    assert hw.name == "smoke"
    rows = (tmp_path / "cpu.measurements.csv").read_text().splitlines()
    kinds = {r.split(",")[0] for r in rows[1:]}
    assert {"launch", "stream_read", "gemv", "decode_attention", "matmul"} <= kinds
    if (os.cpu_count() or 1) >= 2:  # the profile's latencies are the joint fit of the recorded timings
        coll = [r.split(",") for r in rows[1:] if r.split(",")[0] in fit.KINDS]
        assert {c[0] for c in coll} == set(fit.KINDS)
        f = fit.fit_collectives([c[0] for c in coll], [float(c[3]) for c in coll], [int(c[5]) for c in coll],
                                [float(c[6]) for c in coll])
        assert hw.sync_latency_s == pytest.approx(f.coefficients["sync_latency_s"], rel=1e-3, abs=1e-9)
        assert hw.ring_base_latency_s == pytest.approx(f.coefficients["ring_base_latency_s"], rel=1e-3, abs=1e-9)
        assert 0.0 <= hw.comm_overlap_efficiency <= 1.0 and "comm_overlap_efficiency" in hw.empirical
        assert "comm_overlap" in kinds
    assert '"profile"' in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("argv, field", [
    (["calibrate", "--out", "profile.txt"], "--out"),
    (["calibrate", "--quick", "--max-ranks", "0"], "--max-ranks"),
    (["calibrate", "--quick", "--max-ranks", "100000"], "--max-ranks: must be 1 to this machine's"),
    (["calibrate", "--quick", "--name", ""], "--name: must be 1 to 100 printable"),
    (["calibrate", "--quick", "--name", "a\nb"], "--name: must be 1 to 100 printable"),
    (["calibrate", "--from-perf-db", "--out-dir", "afile/ops"], "--out-dir: parent directory"),
    (["validate", "--quick", "--hardware", "h100", "--repeats", "10001"], "--repeats: must be 1 to 10,000"),
    (["validate", "--hardware", "missing-profile.yaml"], "--hardware"),
    (["validate", "--hardware", "no-such-preset"], "--hardware"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, argv, field):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


# ---------------------------------------------------------------- the GPU script, on a CPU


def test_gpu_check_cpu_smoke(tmp_path):
    import csv

    from helix.validation import gpu_check

    assert gpu_check.main(["--out", str(tmp_path), "--cpu-smoke"]) == 0
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
    import torch

    from helix.validation.gpu_check import split_kv_decode

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 4, 16, generator=g), torch.randn(2, 2, 64, 16, generator=g),
               torch.randn(2, 2, 64, 16, generator=g))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(split_kv_decode(q, k, v, 8, "math"), want, rtol=1e-5, atol=1e-5)


def test_runtime_probe_gives_launch_and_step_overhead():
    M = cal.Measurement
    # by hand: 0.5 ms per layer = 5 modelled ops of 0.1 ms; intercept 0.3 ms less 2 launches = 0.1 ms
    rows = _measurements() + [M("runtime_step", "fp32", f"{n} layers B=1 S=8", 0, 0, 1, 0.3e-3 + n * 0.5e-3, 0, 60)
                              for n in (1, 4)]
    rows += [M("runtime_step_all_ranks", "fp32", f"{n} layers B=1 S=8", 0, 0, 2, 0.5e-3 + n * 1.2e-3, 0, 60)
             for n in (1, 4)]
    profile, _ = cal.build_profile(rows, name="probe", cores=2)
    # Helix KVP = 2 on both ranks: 1.2 ms per layer = 6 modelled ops (the combine is the sixth) of 0.2 ms;
    # intercept 0.5 ms less 2 launches = 0.1 ms
    hw = hardware_from_mapping("probe", profile)
    assert hw.kernel_launch_s == pytest.approx(0.2e-3, rel=1e-3)
    assert hw.step_overhead_s == pytest.approx(0.1e-3, rel=1e-3)
    assert hw.all_reduce_algorithms == ("ring",) and "step_overhead_s" in hw.empirical
    single = hardware_from_mapping("single", cal.single_rank_profile(profile, rows))  # alone
    assert single.kernel_launch_s == pytest.approx(0.1e-3, rel=1e-3)
    assert single.step_overhead_s == pytest.approx(0.1e-3, rel=1e-3)
    assert single.hbm_bytes_per_s == pytest.approx(20e9, rel=1e-3)  # streaming alone
    assert single.sync_latency_s == hw.sync_latency_s


def test_collective_times_from_the_last_arrival():
    # [ranks][calls][(entry, exit)]: call 0, rank 1 arrives 0.3 late; call 1, rank 0 arrives 0.1 late
    spans = [[(1.0, 1.5), (2.1, 2.3)],
             [(1.3, 1.5), (2.0, 2.3)]]
    per_call, wait = cal.collective_times_s(spans)
    np.testing.assert_allclose(per_call, [0.2, 0.2])
    assert wait == pytest.approx((0.3 + 0.0 + 0.0 + 0.1) / 4)


def test_slowest_rank_rows_take_the_lowest_rate_and_longest_step():
    r0 = [{"what": "stream_read_all_ranks", "size": "128 MiB", "rate": 15e9, "median_s": 0.01},
          {"what": "runtime_step_all_ranks", "size": "1 layers", "rate": 0.0, "median_s": 1e-3}]
    r1 = [dict(r0[0], rate=12e9), dict(r0[1], median_s=1.2e-3)]
    out = cal.slowest_rank_rows([r0, r1])
    assert out[0]["rate"] == 12e9 and out[1]["median_s"] == 1.2e-3
    assert out[1]["size"].startswith("1 layers") and "slowest of 2" in out[1]["size"]


def test_attention_rate_is_the_slope_not_the_mean_rate():
    # 50 us fixed + bytes at 8 GB/s: the slope gives 8 GB/s; a single size its own (lower) rate
    rows = [cal.Measurement("decode_attention", "fp32", f"{n}", n, 0, 1, 50e-6 + n / 8e9, n / (50e-6 + n / 8e9), 7)
            for n in (32 * cal.MIB, 128 * cal.MIB, 512 * cal.MIB)]
    assert cal.attention_rate(rows) == pytest.approx(8e9, rel=1e-9)
    assert cal.attention_rate(rows[:1]) == pytest.approx(rows[0].rate)


def test_pool_rounds_keeps_the_median_of_each_row_over_rounds():
    M = cal.Measurement
    rows = [M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.010, 12.8e9, 7),
            M("launch", "fp32", "add", 12, 1, 1, 3e-6, 0.0, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.006, 21.3e9, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.008, 16.0e9, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 2, 0.020, 6.4e9, 7)]  # another group: its own row
    pooled = cal.pool_rounds(rows)
    assert [(m.what, m.group_size) for m in pooled] == [("stream_read", 1), ("launch", 1), ("stream_read", 2)]
    assert pooled[0].median_s == 0.008 and pooled[0].rate == 16.0e9 and pooled[0].samples == 21
    assert pooled[1] == rows[1] and pooled[2] == rows[4]
