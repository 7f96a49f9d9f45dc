"""The paper's experiments, one module each; ``helix reproduce`` runs them in this order.

Each module's ``run(ctx)`` returns a ``helix.report.Section`` (the sensitivity study and the
calibration shift also return the note each adds to every claim). All share ``common.Context``: one
hardware preset, FP4, 1M = 10^6.
"""

from helix.experiments import (
    batch_scaling,
    calibration,
    config_ranges,
    context_scaling,
    dsa,
    dsr1,
    dynamic,
    failure_modes,
    fig1_roofline,
    hopb,
    larger_scales,
    llama,
    medha_ablation,
    precision,
    sensitivity,
)

EXPERIMENTS = (fig1_roofline, dsr1, llama, medha_ablation, hopb, config_ranges, context_scaling, batch_scaling,
               failure_modes, dsa, dynamic, precision, larger_scales)

__all__ = ["EXPERIMENTS", "calibration", "sensitivity"]
