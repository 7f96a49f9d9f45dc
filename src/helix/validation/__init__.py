"""Validation: the simulator held against measurements on real hardware, one module per job.

Pure (numpy, the simulator; no torch):
- ``timing``: seconds per call, and collectives timed from the last rank's arrival;
- ``fit``: least squares, the collectives' alpha-beta fit (helix.cost.collectives' forms), error summaries;
- ``measurement``: what calibrate records, and the reductions over rounds and ranks;
- ``launches``: the launches helix.step charges, from the op inventory;
- ``profile``: a hardware profile from the measurements, one builder per group of fields;
- ``grid``, ``compare``, ``tables``: validate's points, the comparison, and its tables and figure;
- ``writers``: the one CSV writer, Markdown-table writer and predicted-vs-measured figure;
- ``deployments``: public end-to-end measurements of real deployments; ``perf_db``: the op-model fit.

Torch worker code:
- ``probes`` (compute), ``runtime_probe``, ``collective_probe``, and ``calibrate``, their driver;
- ``validate``: time the runtime's decode step over the grid;
- ``gpu_timer``, ``gpu_calibration``, ``gpu_points`` and ``gpu_check``: the single-GPU check.

The commands are helix.commands.calibrate, validate and gpu_check. See docs/validation.md.
"""
