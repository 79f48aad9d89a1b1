"""`nlpft compare`: the report of finished runs, checked against the runs' own files
(means from metrics.json, McNemar's test counted by hand from predictions.csv), and the
bad inputs it refuses. The runs are tiny TF-IDF models on noisy data, so they disagree."""

from __future__ import annotations

import base64
import csv
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nlpft.cli.main import main

LABELS = {"pos": ["good", "great", "lovely"], "neg": ["bad", "awful", "poor"], "neutral": ["plain", "usual", "fine"]}
NOUNS = ["film", "meal", "hotel", "book", "phone"]


def noisy_rows(n: int, seed: int) -> list[dict]:
    """Each word is from its row's class 55% of the time, else from any class: hard enough
    that two models differ on some rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(LABELS)[i % 3]
        words = [rng.choice(LABELS[label] if rng.random() < 0.55 else rng.choice(list(LABELS.values())))
                 for _ in range(2)]
        rows.append({"text": f"the {rng.choice(NOUNS)} was {words[0]} and {words[1]} {i}", "label": label})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def finetune(out: Path, train: Path, test: Path, seed: int, *extra: str) -> Path:
    assert main(["finetune", "--train", str(train), "--test", str(test), "--model", "tfidf", "--seed", str(seed),
                 "--out", str(out), "--quiet", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two models (C = 10 and C = 0.05), two seeds each, tested on the same rows."""
    folder = tmp_path_factory.mktemp("compare")
    train = write_csv(folder / "train.csv", noisy_rows(150, 1))
    test = write_csv(folder / "test.csv", noisy_rows(60, 2))
    made = {"c10": [finetune(folder / f"c10-s{s}", train, test, s) for s in (1, 2)],
            "c005": [finetune(folder / f"c005-s{s}", train, test, s, "--head-c", "0.05") for s in (1, 2)]}
    return {"folder": folder, "train": train, **made}


@pytest.fixture(scope="module")
def report(runs) -> Path:
    out = runs["folder"] / "report"
    assert main(["compare", *map(str, runs["c10"] + runs["c005"]), "--out", str(out)]) == 0
    return out


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _predictions(run: Path) -> tuple[list[str], list[str]]:
    with open(run / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["gold"] for r in rows], [r["predicted"] for r in rows]


def _table_row(markdown: str, model: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {model} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_files_and_model_means(runs, report):
    assert {"report.md", "report.html", "frontier.png", "per_class_f1.png", "confusion_best.png"} <= {
        p.name for p in report.iterdir()}
    markdown = (report / "report.md").read_text()
    for model in ("c10", "c005"):
        macro_f1 = [_metrics(run)["test"]["macro_f1"] for run in runs[model]]
        accuracy = [_metrics(run)["test"]["accuracy"] for run in runs[model]]
        cells = _table_row(markdown, model) if f"| {model} |" in markdown else _table_row(markdown, f"{model} (best)")
        assert cells[1] == "1, 2"  # the seeds, grouped from finetune.json
        assert cells[2] == f"{np.mean(macro_f1):.4f} ± {np.std(macro_f1, ddof=1):.4f}"
        assert cells[3] == f"{np.mean(accuracy):.4f} ± {np.std(accuracy, ddof=1):.4f}"
    best = max(("c10", "c005"), key=lambda m: np.mean([_metrics(r)["test"]["macro_f1"] for r in runs[m]]))
    assert f"| {best} (best) |" in markdown
    numbers = json.loads((report / "report.json").read_text())
    assert numbers["best"] == best and numbers["primary"] == "macro_f1"
    for model in numbers["models"]:
        scores = [_metrics(Path(run["path"]))["test"]["macro_f1"] for run in model["runs"]]
        assert model["macro_f1"]["mean"] == pytest.approx(np.mean(scores))


def test_paired_statistics_match_a_hand_computation(runs, report):
    from scipy.stats import binomtest

    means = {m: np.mean([_metrics(r)["test"]["macro_f1"] for r in runs[m]]) for m in ("c10", "c005")}
    best, other = sorted(means, key=means.get, reverse=True)
    markdown = (report / "report.md").read_text()
    cells = _table_row(markdown.split("## Paired comparison")[1], other)
    difference = float(cells[1])
    low, high = map(float, re.findall(r"[-+]\d\.\d+", cells[2]))
    assert difference == pytest.approx(means[best] - means[other], abs=1e-4)
    assert low <= difference <= high
    assert high - low > 0  # the models disagree on some rows: the interval has width

    def right_in_most_seeds(model: str) -> np.ndarray:
        right = [np.equal(*map(np.asarray, _predictions(run))) for run in runs[model]]
        return np.mean(right, axis=0) > 0.5

    best_right, other_right = right_in_most_seeds(best), right_in_most_seeds(other)
    only_best, only_other = int(np.sum(best_right & ~other_right)), int(np.sum(~best_right & other_right))
    assert only_best + only_other > 0
    assert (int(cells[3]), int(cells[4])) == (only_best, only_other)
    assert float(cells[5]) == pytest.approx(binomtest(only_best, only_best + only_other).pvalue, rel=1e-3)


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    images = re.findall(r"<img [^>]*src=\"([^\"]+)\"", page)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:  # each decodes to a PNG with a size (its IHDR chunk: width, height)
        png = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert int.from_bytes(png[16:20], "big") > 100 and int.from_bytes(png[20:24], "big") > 100
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", page, re.IGNORECASE)
    assert "http" not in page.lower()
    assert "<script" not in page.lower()


def test_upstream_metrics_section(runs, tmp_path):
    from nlpft.report import RunRef, UpstreamRef, build_report

    step = tmp_path / "w2v"
    step.mkdir()
    (step / "metrics.json").write_text(json.dumps({"analogy": {"accuracy": 0.4321}, "similarity": 0.55}))
    refs = [RunRef(run, "c10", seed) for seed, run in enumerate(runs["c10"], 1)]
    page = build_report(refs, tmp_path, upstream=[UpstreamRef(step, "w2v", "embed")])
    assert page == tmp_path / "report.html"
    markdown = (tmp_path / "report.md").read_text()
    assert "| w2v | embed | analogy.accuracy | 0.4321 |" in markdown
    assert "Only one model" in markdown


def test_an_embed_step_is_reported_with_its_vectors_scores(runs, tmp_path):
    """`embed train` does not score its vectors; the report does, as `nlpft embed eval` would."""
    import numpy as np
    from gensim.models import KeyedVectors

    from nlpft.embeddings.evaluation import evaluate
    from nlpft.embeddings.vectors_io import save_vectors
    from nlpft.report import RunRef, UpstreamRef, build_report

    words = ["tiger", "cat", "king", "queen", "man", "woman", "money", "bank", "computer", "keyboard"]
    kv = KeyedVectors(vector_size=8)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32))
    step = tmp_path / "w2v"
    save_vectors(kv, step)
    expected = {s["name"]: s for s in evaluate(kv)["sets"]}
    refs = [RunRef(run, "c10", seed) for seed, run in enumerate(runs["c10"], 1)]
    build_report(refs, tmp_path / "report", upstream=[UpstreamRef(step, "w2v", "embed")])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"| w2v | embed | evaluation.wordsim353.covered | {expected['wordsim353']['covered']} |" in markdown
    assert expected["wordsim353"]["covered"] > 0 and "evaluation.analogy.covered" in markdown


def test_not_a_run_directory_is_refused(runs, tmp_path, capsys):
    stray = tmp_path / "stray"
    stray.mkdir()
    assert main(["compare", str(runs["c10"][0]), str(stray), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip()
    assert "stray" in error and "finetune" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_runs_on_other_test_rows_are_refused(runs, tmp_path, capsys):
    other_test = write_csv(tmp_path / "other.csv", noisy_rows(60, 3))
    elsewhere = finetune(tmp_path / "elsewhere", runs["train"], other_test, 1)
    assert main(["compare", str(runs["c10"][0]), str(elsewhere), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip()
    assert "elsewhere" in error and "same test set" in error and len(error.splitlines()) == 1


def test_unknown_primary_metric_is_refused(runs, tmp_path, capsys):
    assert main(["compare", str(runs["c10"][0]), "--out", str(tmp_path / "r"), "--primary", "bleu"]) == 2
    assert "--primary one of" in capsys.readouterr().err


@pytest.mark.slow
def test_report_opens_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine")
    probe = tmp_path / "probe.html"  # the report plus a line that writes each image's decoded width
    probe.write_text((report / "report.html").read_text().replace(
        "</body>", "<script>document.body.setAttribute('data-widths', Array.from(document.images)"
                   ".map(i => i.naturalWidth).join(','))</script></body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    widths = [int(w) for w in re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")]
    assert len(widths) >= 3 and all(w > 0 for w in widths)


def _copy_run(run: Path, to: Path, **metrics) -> Path:
    """A copy of the finished run `run` whose metrics.json has `metrics` set."""
    shutil.copytree(run, to)
    data = {**_metrics(run), **metrics}
    (to / "metrics.json").write_text(json.dumps(data))
    return to


def test_learning_curves_from_validation_history(runs, tmp_path):
    from nlpft.report import RunRef, build_report

    history = [{"step": s, "eval_loss": 1.0 / s, "eval_macro_f1": 0.5 + s / 100} for s in (10, 20, 30)]
    refs = [RunRef(_copy_run(run, tmp_path / f"{name}-{seed}", valid_history=history), name, seed)
            for name in ("c10", "c005") for seed, run in enumerate(runs[name], 1)]
    out = tmp_path / "report"  # made by build_report
    build_report(refs, out)
    assert (out / "learning_curves.png").stat().st_size > 0
    assert "![Learning curves](learning_curves.png)" in (out / "report.md").read_text()


def test_seed_groups_are_named_after_their_directories(runs, tmp_path):
    from nlpft.report.runs import refs_from_directories

    refs = refs_from_directories(runs["c10"] + runs["c005"])
    assert [(ref.path.name, ref.model, ref.seed) for ref in refs] == [
        ("c10-s1", "c10", 1), ("c10-s2", "c10", 2), ("c005-s1", "c005", 1), ("c005-s2", "c005", 2)]
    # directories whose names say nothing: the model spec and the options that differ
    renamed = [shutil.copytree(run, tmp_path / f"run{k}") for k, run in enumerate(runs["c10"] + runs["c005"])]
    assert sorted({ref.model for ref in refs_from_directories(renamed)}) == ["tfidf head_c=0.05", "tfidf head_c=None"]


def test_overwrite_replaces_an_earlier_report(runs, report, capsys):
    args = ["compare", *map(str, runs["c10"]), "--out", str(report)]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert "Only one model" in (report / "report.md").read_text()
    assert main(["compare", *map(str, runs["c10"] + runs["c005"]), "--out", str(report), "--overwrite"]) == 0


@pytest.mark.parametrize("task", ["multi", "regression"])
def test_multilabel_and_regression_runs(tmp_path, task):
    rng = random.Random(3)
    words = {"food": ["tasty", "soup"], "price": ["cheap", "bill"], "staff": ["friendly", "waiter"]}
    rows = []
    for i in range(200):
        tags = [t for t in words if rng.random() < 0.45] or ["food"]
        text = " ".join(rng.choice(words[t] if rng.random() < 0.7 else rng.choice(list(words.values())))
                        for t in tags for _ in range(2))
        rows.append({"text": f"{text} {i}", "label": ";".join(tags) if task == "multi" else str(len(tags))})
    test = write_csv(tmp_path / "test.csv", rows[140:])
    # the second model learns from fewer rows (--head-c alone leaves a regression head unchanged)
    made = [finetune(tmp_path / f"c{c}", write_csv(tmp_path / f"train{size}.csv", rows[:size]), test, 1, "--task",
                     task, "--head-c", c) for c, size in (("10", 140), ("0.05", 50))]
    out = tmp_path / "report"
    assert main(["compare", *map(str, made), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    primary = {"multi": "macro F1 (primary)", "regression": "Spearman (primary)"}[task]
    assert primary in markdown
    paired = markdown.split("## Paired comparison")[1].split("## Plots")[0]
    cells = _table_row(paired, next(m for m in ("c10", "c0.05") if f"| {m} |" in paired))
    low, high = map(float, re.findall(r"[-+]\d\.\d+", cells[2]))
    assert low <= float(cells[1]) <= high and low < high
    assert (cells[5] == "–") == (task == "regression")  # McNemar only for classification
    assert ("F1 per label" in markdown) == (task == "multi")


def _tagger_run(folder: Path, sentences: list, predicted: list, seed: int) -> Path:
    """A tagger's output files as `nlpft finetune --task tag` writes them (made with the same
    functions), without training one."""
    from nlpft.finetune.tag_metrics import tagging_metrics, write_predictions_conll

    folder.mkdir()
    tokens, gold = [s[0] for s in sentences], [s[1] for s in sentences]
    write_predictions_conll(folder / "predictions.conll", tokens, predicted, gold)
    metrics = {"task": "tag", "test": tagging_metrics(gold, predicted), "train_time_s": 1.0 + seed,
               "parameters": 1000, "valid_history": []}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "finetune.json").write_text(json.dumps({"task": {"task": "tag"}, "options": {"seed": seed}}))
    return folder


def test_tagger_runs_are_paired_over_sentences(tmp_path):
    from nlpft.report import RunRef, build_report
    from nlpft.report.stats import entity_counts

    rng = random.Random(5)
    sentences = [(("Ann", "met", "Bob", "in", "Rome"), ("B-PER", "O", "B-PER", "O", "B-LOC"))] * 30
    def noisy(rate):
        return [tuple(tag if rng.random() > rate else "O" for tag in gold) for _, gold in sentences]
    refs = [RunRef(_tagger_run(tmp_path / f"{name}-{seed}", sentences, noisy(rate), seed), name, seed)
            for name, rate in (("good", 0.05), ("poor", 0.4)) for seed in (1, 2)]
    out = tmp_path / "report"
    out.mkdir()
    build_report(refs, out)
    markdown = (out / "report.md").read_text()
    assert "entity F1 (primary)" in markdown and "F1 per entity type" in markdown
    cells = _table_row(markdown.split("## Paired comparison")[1], "poor")
    gold = [s[1] for s in sentences]

    def seed_mean_f1(name: str) -> float:
        scores = []
        for seed in (1, 2):
            predicted = [tuple(line.split("\t")[-1] for line in block.splitlines())
                         for block in (tmp_path / f"{name}-{seed}" / "predictions.conll").read_text().split("\n\n")]
            true_pos, found, wanted = entity_counts(gold, predicted).sum(axis=0)
            scores.append(2 * true_pos / (found + wanted))
        return float(np.mean(scores))

    assert float(cells[1]) == pytest.approx(seed_mean_f1("good") - seed_mean_f1("poor"), abs=1e-4)
    low, high = map(float, re.findall(r"[-+]\d\.\d+", cells[2]))
    assert 0 < low <= float(cells[1]) <= high
    assert cells[5] == "–"


def test_runs_of_different_tasks_are_refused(runs, tmp_path, capsys):
    relabelled = _copy_run(runs["c10"][0], tmp_path / "as-multi", task="multi")
    assert main(["compare", str(runs["c10"][0]), str(relabelled), "--out", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err.strip()
    assert "as-multi" in error and "one task" in error and len(error.splitlines()) == 1


def test_frontier_keeps_what_nothing_cheaper_beats():
    from nlpft.report.plots import pareto_frontier

    points = [(1.0, 0.70), (2.0, 0.65), (3.0, 0.80), (4.0, 0.80), (5.0, 0.90)]  # (seconds, score)
    assert pareto_frontier(points) == [0, 2, 4]
    assert pareto_frontier([(1.0, 0.3), (2.0, 0.2), (3.0, 0.4)], greater_is_better=False) == [0, 1]


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy"])
def test_counted_bootstrap_equals_recomputing_on_the_drawn_rows(metric):
    """The fast path (per-row counts weighted by how often a draw picks each row) gives
    what recomputing the metric on each draw's rows gives."""
    from nlpft.finetune.metrics import accuracy_per_draw, macro_f1_per_draw
    from nlpft.report.stats import paired_bootstrap, row_statistic

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 300)
    best = [np.where(rng.random(300) < 0.8, gold, rng.integers(0, 4, 300)) for _ in range(2)]
    other = [np.where(rng.random(300) < 0.7, gold, rng.integers(0, 4, 300)) for _ in range(2)]
    recomputed = {"macro_f1": macro_f1_per_draw(4), "accuracy": accuracy_per_draw}[metric]
    assert paired_bootstrap(row_statistic("single", metric, 4), [(gold, best, other)], resamples=300) == (
        pytest.approx(paired_bootstrap(recomputed, [(gold, best, other)], resamples=300), abs=1e-12))


def test_seeds_with_their_own_splits_are_paired_seed_by_seed(runs, tmp_path):
    """Without --test each seed holds out its own rows: the models are paired within each
    seed (the runs of one seed share the split), McNemar's counts summed over the seeds."""
    from scipy.stats import binomtest

    def split_by_seed(name: str, seed: int, *extra: str) -> Path:
        out = tmp_path / f"{name}-s{seed}"
        assert main(["finetune", "--train", str(runs["train"]), "--model", "tfidf", "--seed", str(seed),
                     "--out", str(out), "--quiet", *extra]) == 0
        return out

    made = {"c10": [split_by_seed("c10", s) for s in (1, 2)],
            "c005": [split_by_seed("c005", s, "--head-c", "0.05") for s in (1, 2)]}
    assert _predictions(made["c10"][0])[0] != _predictions(made["c10"][1])[0]  # the seeds' test rows differ
    out = tmp_path / "report"
    assert main(["compare", *map(str, made["c10"] + made["c005"]), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "paired seed by seed" in markdown
    means = {m: np.mean([_metrics(r)["test"]["macro_f1"] for r in made[m]]) for m in made}
    best, other = sorted(means, key=means.get, reverse=True)
    cells = _table_row(markdown.split("## Paired comparison")[1], other)
    assert float(cells[1]) == pytest.approx(means[best] - means[other], abs=1e-4)
    low, high = map(float, re.findall(r"[-+]\d\.\d+", cells[2]))
    assert low <= float(cells[1]) <= high
    only_best = only_other = 0
    for best_run, other_run in zip(made[best], made[other], strict=True):
        gold, best_says = map(np.asarray, _predictions(best_run))
        other_says = np.asarray(_predictions(other_run)[1])
        only_best += int(np.sum((best_says == gold) & (other_says != gold)))
        only_other += int(np.sum((best_says != gold) & (other_says == gold)))
    assert (int(cells[3]), int(cells[4])) == (only_best, only_other)
    assert float(cells[5]) == pytest.approx(binomtest(only_best, only_best + only_other).pvalue, rel=1e-3)
    # a model with no seed in common with the best one: the table, but no pairing
    lone = split_by_seed("lone", 3, "--head-c", "1")
    out = tmp_path / "report-lone"
    assert main(["compare", *map(str, made["c10"] + made["c005"] + [lone]), "--out", str(out)]) == 0
    paired = (out / "report.md").read_text().split("## Paired")[1].split("## Plots")[0]
    assert "no seed in common" in paired  # lone-s3 against the best, or the others against lone-s3


def test_frontier_names_of_close_models_do_not_overlap(tmp_path):
    from nlpft.finetune.metrics import _pyplot
    from nlpft.report.plots import annotate_apart

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(100.0, 0.930), (101.0, 0.931), (102.0, 0.929), (99.0, 0.930), (300.0, 0.95), (20.0, 0.80)]
    ax.scatter(*zip(*points))
    texts = annotate_apart(fig, ax, points, ["minilm", "minilm-mean", "minilm-lr5e-5", "dapt", "large", "tfidf"])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)
