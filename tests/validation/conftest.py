"""Validation tests that run torch (the runtime, the probes, the commands that need it): skipped without it."""

import pytest

pytest.importorskip("torch")
