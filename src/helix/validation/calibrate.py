"""``helix calibrate``'s driver: measure the machine this runs on into a hardware profile.

One simulator "GPU" is one runtime rank; on CPU a rank is one process on one torch thread. In order:

- single-rank compute probes (helix.validation.probes): the fixed cost of an eager op, the runtime's
  fixed costs (helix.validation.runtime_probe), streaming read, the runtime's decode attention, decode
  GEMVs, matmul FLOP/s per dtype and size class;
- per group size, one gloo process per core (helix.validation.collective_probe): the same rates with
  every rank at once, all-reduce / all-gather / all-to-all timed as a decode step meets them, and the
  compute-communication overlap;
- the drifting rates again (memory bandwidth, attention, fixed costs move on a shared machine; the
  rounds are pooled);
- the profile (helix.validation.profile), with the collectives fitted to the simulator's forms
  (helix.validation.fit).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from helix.validation import fit
from helix.validation.collective_probe import CollectivePlan, measure_collectives
from helix.validation.measurement import Measurement
from helix.validation.probes import ComputePlan, measure_drifting_rates, measure_local
from helix.validation.profile import build_profile, single_rank_profile

STAGES = ("compute", "collectives", "drifting rates", "fit")  # what calibrate(progress=) reports, in order


@dataclass(frozen=True)
class Calibration:
    profile: dict
    measurements: list[Measurement]
    collective_fit: fit.LinearFit | None
    wall_s: float
    single_rank_profile: dict | None = None  # beside the profile as <stem>.single-rank.yaml


def default_group_sizes(cores: int | None = None) -> tuple[int, ...]:
    """2, 4, 8, ... up to the core count: more ranks than cores would time contention."""
    cores = cores or os.cpu_count() or 1
    return tuple(p for p in (2, 4, 8, 16) if p <= cores)


def calibrate(*, quick: bool = False, group_sizes: tuple[int, ...] | None = None, name: str = "",
              progress=None) -> Calibration:
    """Measure this machine; ``quick`` uses tiny sizes (tests), not a usable profile. ``progress(stage)``
    is called as each of ``STAGES`` ends (collectives too when there are no groups to measure)."""
    done = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    group_sizes = default_group_sizes(cores) if group_sizes is None else group_sizes
    plan = ComputePlan.quick() if quick else ComputePlan()
    measurements = measure_local(plan)
    done(STAGES[0])
    if group_sizes:
        measurements += measure_collectives(group_sizes, CollectivePlan.quick() if quick else CollectivePlan())
    done(STAGES[1])
    measurements += measure_drifting_rates(plan)  # the second round, after the collectives
    done(STAGES[2])
    profile, coll_fit = build_profile(measurements, name=name or f"cpu-{socket.gethostname()}", cores=cores)
    done(STAGES[3])
    return Calibration(profile, measurements, coll_fit, time.perf_counter() - t0,
                       single_rank_profile(profile, measurements))
