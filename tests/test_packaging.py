"""pyproject.toml lists packages explicitly (corpora/ installs as nlpft.corpora), so a new
subpackage must be added there or a regular install would miss it."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nlpft").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "nlpft.corpora" in listed and (ROOT / "corpora" / "registry.json").is_file()
