"""The layer order of README's "Layout" holds: import-linter checks the contracts declared
in pyproject.toml ([tool.importlinter]) against every import in nlpft, including the ones
inside functions."""

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _contracts() -> list[dict]:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return settings["tool"]["importlinter"]["contracts"]


def test_every_import_follows_the_layer_contracts():
    if importlib.util.find_spec("importlinter") is None:
        pytest.fail("import-linter is missing; it is in the test extra: pip install -e '.[test]'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # the command line, not the Python API: it reports each broken contract with the
    # importing module and line, which is what a failure here should show
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--no-logo", str(REPO / "pyproject.toml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, "imports that break the layer order:\n" + report[report.find("Broken contracts"):]
    assert "0 broken" in report


def test_every_package_has_a_layer():
    """A new package under nlpft/ must be placed in the order, or nothing checks it."""
    (layers_contract,) = [c for c in _contracts() if c["id"] == "layers"]
    placed = {name.strip() for layer in layers_contract["layers"] for name in layer.split("|")}
    outside = {"nlpft.__init__", "nlpft.__main__"}  # the package itself and `python -m nlpft`
    packages = {f"nlpft.{p.parent.name}" for p in (REPO / "nlpft").glob("*/__init__.py")}
    modules = {f"nlpft.{p.stem}" for p in (REPO / "nlpft").glob("*.py")} - outside
    unplaced = sorted((packages | modules) - placed)
    assert not unplaced, f"place {unplaced} in a layer of [tool.importlinter] in pyproject.toml"
    assert placed <= packages | modules, f"layers name modules that do not exist: {sorted(placed - packages - modules)}"


def test_every_runner_is_kept_apart_from_the_others():
    """Each module under nlpft/runners/ is in the runners contract, so none can import another."""
    (runners_contract,) = [c for c in _contracts() if c["id"] == "runners"]
    placed = {name.strip() for layer in runners_contract["layers"] for name in layer.split("|")}
    runners = {p.stem for p in (REPO / "nlpft" / "runners").glob("*.py")} - {"__init__"}
    runners |= {p.parent.name for p in (REPO / "nlpft" / "runners").glob("*/__init__.py")}
    unplaced = sorted(runners - placed)
    assert not unplaced, (f"add {unplaced} to the runners contract in pyproject.toml: with the runners if it is "
                          "one, or below them (beside output) if runners share it")
    assert placed <= runners, f"the runners contract names modules that do not exist: {sorted(placed - runners)}"
