"""Timings shared by the validation tests (a plain module: conftest names are not importable reliably)."""

import numpy as np

SIZES = np.array([64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304], dtype=float)


def synthetic_collectives(sync, ring_base, ring_hop, beta, ps=(2, 4, 8)):
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
