"""Commands that run torch (calibrate's measurements, validate, gpu-check).

The CLI imports every command module at start-up to build its parser, and torch costs 1-2 s to import,
so these modules look torch up without importing it, and import their torch drivers when they run. A
command module that needs torch says ``NEEDS_TORCH = True``; helix.cli leaves it out where
``has_torch()`` is false.
"""

from __future__ import annotations

import importlib.util

INSTALL = "pip install -e \".[runtime]\""


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None
