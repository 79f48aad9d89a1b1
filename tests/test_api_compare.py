"""`nlpft.compare(runs, out, primary=None)`: the comparison report from Python, its result
read back from report.json. Tiny TF-IDF runs, as in test_compare."""

from __future__ import annotations

import json

import pytest

import nlpft
from tests.test_compare import runs  # noqa: F401 (the fixture: two models, two seeds each)


def test_compare_returns_the_reports_paths_table_and_best_model(runs, tmp_path):  # noqa: F811
    result = nlpft.compare(runs["c10"] + runs["c005"], out=tmp_path / "report", primary="accuracy")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert result.path == tmp_path / "report" and result.html.is_file() and result.markdown.is_file()
    assert result.primary == "accuracy" and result.best == report["best"]
    assert {m["name"] for m in result.models} == {"c10", "c005"}
    seeds = [json.loads((run / "metrics.json").read_text())["test"]["accuracy"] for run in runs["c10"]]
    assert result.model("c10")["accuracy"]["mean"] == pytest.approx(sum(seeds) / 2)
    other = ({"c10", "c005"} - {result.best}).pop()
    assert other in result.paired


def test_compare_refuses_bad_input_as_user_errors(runs, tmp_path):  # noqa: F811
    with pytest.raises(nlpft.UserInputError, match="not one path"):
        nlpft.compare(runs["c10"][0], out=tmp_path / "one")
    with pytest.raises(nlpft.UserInputError, match="bogus"):
        nlpft.compare(runs["c10"], out=tmp_path / "bad", primary="bogus")
    with pytest.raises(nlpft.UserInputError):
        nlpft.compare(runs["c10"], out=runs["c10"][0])  # an earlier nlpft output, without overwrite
