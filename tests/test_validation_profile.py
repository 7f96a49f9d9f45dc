"""Calibration's profile from measurements, by hand: the fields, the overlap, the fixed costs, the reductions."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from validation_cases import synthetic_collectives

from helix.outputs import write_atomic
from helix.specs.hardware import hardware_from_mapping, load_hardware
from helix.specs.precision import PrecisionSpec
from helix.validation import measurement, profile
from helix.validation.measurement import MIB, Measurement


def _measurements():
    M = Measurement
    rows = [M("launch", "fp32", "add", 12, 1, 1, 3e-6, 0.0, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 128e6 / 20e9, 20e9, 7),
            M("stream_read_all_ranks", "fp32", "128 MiB", 128e6, 0, 2, 128e6 / 15e9, 15e9, 7),
            M("gemv", "fp32", "1x4096x8192", 134e6, 6.7e7, 1, 134e6 / 12e9, 12e9, 7),
            M("decode_attention", "fp32", "B=4", 128e6, 1e8, 1, 128e6 / 8e9, 8e9, 7),
            M("decode_attention_all_ranks", "fp32", "B=4", 128e6, 1e8, 2, 128e6 / 4.5e9, 4.5e9, 7),
            M("matmul", "fp32", "large 1024^3", 1, 2 * 1024**3, 1, 2 * 1024**3 / 90e9, 90e9, 7),
            M("matmul", "bf16", "large 1024^3", 1, 2 * 1024**3, 1, 2 * 1024**3 / 200e9, 200e9, 7)]
    kinds, ns, groups, t = synthetic_collectives(300e-6, 500e-6, 0.0, 1 / 2e9, ps=(2,))
    rows += [M(k, "fp32", f"{n} B", n, 0, p, ti, 0.0, 7) for k, n, p, ti in zip(kinds, ns, groups, t, strict=True)]
    return rows


def test_build_profile_maps_measurements_to_fields():
    prof, coll = profile.build_profile(_measurements(), name="test-cpu", cores=2)
    hw = hardware_from_mapping("test", prof)
    assert hw.hbm_bytes_per_s == pytest.approx(15e9, rel=1e-3)  # per rank with both ranks streaming
    assert hw.hbm_efficiency == pytest.approx(4.5e9 / 15e9, rel=1e-3)  # both at once: attention / streaming
    alone = hardware_from_mapping("alone", profile.single_rank_profile(prof, _measurements()))
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
    np.testing.assert_allclose(measurement.overlap_efficiency([2e-3] * 4, [3e-3] * 4, [4e-3, 5e-3, 3e-3, 6e-3]),
                               [0.5, 0.0, 1.0, 0.0])  # slower than serial clips to 0
    assert measurement.overlap_efficiency(2e-3, 3e-3, 1e-3) == 1.0  # faster than the longer alone clips to 1


def test_build_profile_writes_measured_overlap():
    # two ranks, two sizes, 3 repetitions each: per-repetition times (a2a, attention, both) on each rank
    reps = {4096: [(2e-3, 2e-3, 3e-3), (2e-3, 2e-3, 4e-3), (2e-3, 2e-3, 3.5e-3)],  # eta 0.5, 0, 0.25
            262144: [(4e-3, 4e-3, 6e-3), (4e-3, 4e-3, 8e-3), (4e-3, 4e-3, 5e-3)]}  # eta 0.5, 0, 0.75
    rank = [{"n_bytes": nb, "tokens": 100, "times": list(t)} for nb, ts in reps.items() for t in ts]
    rows = measurement.overlap_rows([rank, rank], world=2)
    by = {(m.what, m.n_bytes): m for m in rows}
    assert by[("overlap_both", 4096)].rate == pytest.approx(0.25)
    assert by[("overlap_both", 262144)].rate == pytest.approx(0.5)
    assert by[("comm_overlap", 0.0)].rate == pytest.approx(0.375)  # median of 0.5, 0, 0.25, 0.5, 0, 0.75
    prof, _ = profile.build_profile(_measurements() + rows, name="overlap", cores=2)
    hw = hardware_from_mapping("overlap", prof)
    assert hw.comm_overlap_efficiency == pytest.approx(0.375)
    assert "comm_overlap_efficiency" in hw.empirical
    assert "async_op=True" in hw.sources["comm_overlap_efficiency"]
    assert "4096 B a2a" in hw.sources["comm_overlap_efficiency"]


def test_profile_yaml_roundtrip(tmp_path):
    prof, _ = profile.build_profile(_measurements(), name="roundtrip", cores=2)
    path = tmp_path / "p.yaml"
    write_atomic(path, profile.profile_yaml(prof))
    hw = load_hardware(path)
    assert hw.name == "roundtrip"
    assert hw.hbm_bytes_per_s == prof["hbm_bytes_per_s"]["value"]
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"]  # no temporary left behind


def test_runtime_probe_gives_launch_and_step_overhead():
    M = Measurement
    # by hand: 0.5 ms per layer = 5 modelled ops of 0.1 ms; intercept 0.3 ms less 2 launches = 0.1 ms
    rows = _measurements() + [M("runtime_step", "fp32", f"{n} layers B=1 S=8", 0, 0, 1, 0.3e-3 + n * 0.5e-3, 0, 60)
                              for n in (1, 4)]
    rows += [M("runtime_step_all_ranks", "fp32", f"{n} layers B=1 S=8", 0, 0, 2, 0.5e-3 + n * 1.2e-3, 0, 60)
             for n in (1, 4)]
    prof, _ = profile.build_profile(rows, name="probe", cores=2)
    # Helix KVP = 2 on both ranks: 1.2 ms per layer = 6 modelled ops (the combine is the sixth) of 0.2 ms;
    # intercept 0.5 ms less 2 launches = 0.1 ms
    hw = hardware_from_mapping("probe", prof)
    assert hw.kernel_launch_s == pytest.approx(0.2e-3, rel=1e-3)
    assert hw.step_overhead_s == pytest.approx(0.1e-3, rel=1e-3)
    assert hw.all_reduce_algorithms == ("ring",) and "step_overhead_s" in hw.empirical
    single = hardware_from_mapping("single", profile.single_rank_profile(prof, rows))  # alone
    assert single.kernel_launch_s == pytest.approx(0.1e-3, rel=1e-3)
    assert single.step_overhead_s == pytest.approx(0.1e-3, rel=1e-3)
    assert single.hbm_bytes_per_s == pytest.approx(20e9, rel=1e-3)  # streaming alone
    assert single.sync_latency_s == hw.sync_latency_s


def test_slowest_rank_rows_take_the_lowest_rate_and_longest_step():
    r0 = [{"what": "stream_read_all_ranks", "size": "128 MiB", "rate": 15e9, "median_s": 0.01},
          {"what": "runtime_step_all_ranks", "size": "1 layers", "rate": 0.0, "median_s": 1e-3}]
    r1 = [dict(r0[0], rate=12e9), dict(r0[1], median_s=1.2e-3)]
    out = measurement.slowest_rank_rows([r0, r1])
    assert out[0]["rate"] == 12e9 and out[1]["median_s"] == 1.2e-3
    assert out[1]["size"].startswith("1 layers") and "slowest of 2" in out[1]["size"]


def test_attention_rate_is_the_slope_not_the_mean_rate():
    # 50 us fixed + bytes at 8 GB/s: the slope gives 8 GB/s; a single size its own (lower) rate
    rows = [Measurement("decode_attention", "fp32", f"{n}", n, 0, 1, 50e-6 + n / 8e9, n / (50e-6 + n / 8e9), 7)
            for n in (32 * MIB, 128 * MIB, 512 * MIB)]
    assert measurement.attention_rate(rows) == pytest.approx(8e9, rel=1e-9)
    assert measurement.attention_rate(rows[:1]) == pytest.approx(rows[0].rate)


def test_pool_rounds_keeps_the_median_of_each_row_over_rounds():
    M = Measurement
    rows = [M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.010, 12.8e9, 7),
            M("launch", "fp32", "add", 12, 1, 1, 3e-6, 0.0, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.006, 21.3e9, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 1, 0.008, 16.0e9, 7),
            M("stream_read", "fp32", "128 MiB", 128e6, 0, 2, 0.020, 6.4e9, 7)]  # another group: its own row
    pooled = measurement.pool_rounds(rows)
    assert [(m.what, m.group_size) for m in pooled] == [("stream_read", 1), ("launch", 1), ("stream_read", 2)]
    assert pooled[0].median_s == 0.008 and pooled[0].rate == 16.0e9 and pooled[0].samples == 21
    assert pooled[1] == rows[1] and pooled[2] == rows[4]


def test_measurements_csv_keeps_a_label_with_a_comma_in_one_column():
    rows = [Measurement("stream_read_all_ranks", "fp32", "128 MiB, slowest of 2 ranks", 128e6, 0.0, 2, 0.01, 12.8e9, 7)]
    (got,) = list(csv.DictReader(io.StringIO(measurement.measurements_csv(rows))))
    assert got["size"] == "128 MiB, slowest of 2 ranks" and got["rate"] == "1.28e+10" and got["samples"] == "7"
