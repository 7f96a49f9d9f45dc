"""Commands that run torch (calibrate's measurements, validate, gpu-check).

The CLI imports every command module at start-up to build its parser, and torch costs 1-2 s to import,
so these modules look torch up without importing it, and import their torch drivers when they run.
"""

from __future__ import annotations

import importlib.util

INSTALL = "pip install -e \".[runtime]\""


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def require_torch(command: str) -> None:
    """Raise ModuleNotFoundError for torch where it is missing: helix.cli then leaves ``command`` out."""
    if not has_torch():
        raise ModuleNotFoundError(f"helix {command} needs torch ({INSTALL})", name="torch")
