"""Fit helix.cost.optime's op-time forms to aiconfigurator-core's measured kernel tables.

- ``tables``: read and select parquet rows (the only module that imports pandas and
  aiconfigurator_core: import it only after checking the optional ``perf-db`` extra is installed);
- ``forms``: per table, bytes / FLOPs / features through helix.cost.kernels, peaks, knot spacing;
- ``fit``: numpy only: Levenberg-Marquardt base, penalised least-squares correction, held-out split;
- ``build``: one OpModel per hardware and engine, held-out errors, the preset files.

Run by ``helix calibrate --from-perf-db``.
"""
