"""Quality on real text: all three algorithms on Austen + KJV (../shared/corpora).

Thresholds sit below what each algorithm reached in benchmarks/embeddings (and what the
GloVe C code and plain gensim reach on the same corpus), so a regression in training,
tokenization or evaluation fails them.
"""

import json

import pytest

from nlpft.cli.main import main
from nlpft.embeddings.evaluation import evaluate
from nlpft.embeddings.vectors_io import load_vectors
from tests.conftest import shared_corpus

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algo,min_analogy,min_simlex", [
    ("word2vec", 0.04, 0.08),
    ("fasttext", 0.04, 0.05),
    ("glove", 0.03, 0.05),
])
def test_quality_on_austen_kjv(tmp_path, algo, min_analogy, min_simlex):
    corpora = [str(shared_corpus("austen.txt")), str(shared_corpus("kjv.txt"))]
    extra = ["--buckets", "200000"] if algo == "fasttext" else []
    out = tmp_path / algo
    assert main(["embed", "train", "--algo", algo, "--corpus", *corpora, "--out", str(out), "--quiet", *extra]) == 0
    scores = {s["name"]: s for s in evaluate(load_vectors(out))["sets"]}
    assert scores["analogy"]["score"] >= min_analogy
    assert scores["simlex999"]["score"] >= min_simlex
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corpus"]["tokens"] > 1_400_000
