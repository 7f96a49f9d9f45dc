"""The README's install text tells the truth: its test command is exactly what .ci/run runs, the CPU build of
torch is named with PyTorch's CPU index, and the simulator's own install pulls no torch."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_test_command_is_what_ci_runs():
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.startswith("python3 -m venv")]
    readme = (ROOT / "README.md").read_text()
    assert len(ci) == 1 and f"```bash\n{ci[0]}\n```" in readme
    reproduce = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/helix reproduce --out results"
    assert f"```bash\n{reproduce}\n```" in readme


def test_readme_names_the_cuda_build_and_the_cpu_index():
    readme = (ROOT / "README.md").read_text()
    assert "is the **CUDA build**" in readme
    assert "pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme


def test_simulator_install_needs_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.lower().startswith("torch") for d in project["dependencies"])
    assert project["optional-dependencies"]["runtime"] == ["torch==2.13.0"]
