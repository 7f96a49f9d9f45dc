"""Validation: the simulator held against measurements on real hardware.

- ``fit``: pure fitting (alpha-beta collectives, lines) and error summaries;
- ``calibrate``: measure this machine, write a hardware profile (``helix calibrate``);
- ``validate`` and ``tables``: time the runtime's decode step over a grid, predict it with the
  simulator, write tables and a figure (``helix validate``);
- ``gpu_check``: single-GPU calibration and op validation (``python -m helix.validation.gpu_check``);
- ``command``: the two CLI commands.

See docs/validation.md.
"""
