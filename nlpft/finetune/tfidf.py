"""`--model tfidf`: a scikit-learn TF-IDF + linear model baseline, saved without pickle.

Word uni- and bigrams (sublinear tf, min df 2, at most 200k features) feed the shared
linear head (`nlpft.finetune.linear_head`: logistic regression for classes and label sets,
ridge regression for a number). For
sentence pairs one vocabulary is fitted on both texts and each text gets its own block of
features (first text | second text), so the model can tell which side a word is on. The fitted
state is plain arrays, so it is saved as safetensors (idf, coefficients, intercepts) and
JSON (vocabulary, settings) and rebuilt on load: no joblib or pickle file is ever written
or read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError
from nlpft.finetune.linear_head import LinearHead

VECTORIZER = {"ngram_range": (1, 2), "min_df": 2, "max_features": 200_000, "sublinear_tf": True,
              "lowercase": True, "strip_accents": "unicode", "dtype": np.float32}
WEIGHTS_FILE = "tfidf.safetensors"
STATE_FILE = "tfidf.json"


class TfidfClassifier:
    def __init__(self, vectorizer, head: LinearHead, task_state: dict, pairs: bool = False):
        self.vectorizer = vectorizer
        self.head = head  # over the features, doubled for pairs
        self.task_state = task_state  # the task's state when fitted, kept in tfidf.json
        self.pairs = pairs

    def features(self, texts: list[str], pairs: list[str | None] | None = None):
        """(texts, features) sparse; for pairs [first text | second text]."""
        if not self.pairs:
            return self.vectorizer.transform(texts)
        if pairs is None:
            raise UserInputError("this TF-IDF model was trained on text pairs; pass the second texts too")
        return _side_by_side(self.vectorizer, texts, pairs)

    @classmethod
    def fit(cls, examples, task, seed: int = 13, C: float = 10.0) -> TfidfClassifier:
        """Fitted on `examples` for `task` (a `TextTask`: its `target_kind` picks the model)."""

        texts = [e.text for e in examples]
        paired = any(e.text_pair is not None for e in examples)
        pairs = [e.text_pair or "" for e in examples] if paired else []
        vectorizer, features = _features(texts, pairs)
        head = LinearHead.fit(features, task, task.gold(examples), seed=seed, C=C)
        return cls(vectorizer, head, task.state(), paired)

    def logits(self, texts: list[str], pairs: list[str | None] | None = None) -> np.ndarray:
        return self.head.logits(self.features(texts, pairs))  # (texts, outputs)

    def num_parameters(self) -> int:
        return self.head.num_parameters()

    # -- saving without pickle -------------------------------------------------------------
    def save(self, folder: Path) -> None:
        from nlpft.training.weights import save_numpy_file as save_file

        folder = Path(folder)
        vocabulary = sorted(self.vectorizer.vocabulary_.items(), key=lambda kv: kv[1])
        save_file({"idf": self.vectorizer.idf_.astype(np.float32), **self.head.arrays()}, str(folder / WEIGHTS_FILE))
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in VECTORIZER.items() if k != "dtype"}
        settings["min_df"] = self.vectorizer.min_df
        state = {"vectorizer": settings, "vocabulary": [term for term, _ in vocabulary],
                 "task": self.task_state, "pairs": self.pairs}
        (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TfidfClassifier:
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import TfidfVectorizer

        folder = Path(folder)
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            arrays = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{folder}: the TF-IDF model files are missing or damaged ({exc})") from None
        settings = {**state["vectorizer"], "ngram_range": tuple(state["vectorizer"]["ngram_range"]),
                    "dtype": np.float32}
        vectorizer = TfidfVectorizer(**settings)
        vectorizer.vocabulary_ = {term: i for i, term in enumerate(state["vocabulary"])}
        vectorizer.idf_ = arrays["idf"]
        return cls(vectorizer, LinearHead.from_arrays(arrays), state.get("task") or {},
                   pairs=bool(state.get("pairs", False)))


#: the last training texts' fitted vectorizer and features: the trials of a search
#: (`finetune --search`) differ in C only, and fitting the vectorizer is half a trial's time
_last_features: dict = {}


def _features(texts: list[str], pairs: list[str]):
    """(fitted vectorizer, training features) of `texts` (and `pairs`), reused while the
    same texts come back (the vectorizer's fit is deterministic, so a reuse is exact)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    key = (tuple(texts), tuple(pairs))
    if _last_features.get("key") == key:
        return _last_features["vectorizer"], _last_features["features"]
    vectorizer = TfidfVectorizer(**VECTORIZER)
    try:
        vectorizer.fit(texts + pairs)
    except ValueError:  # every term below min_df
        vectorizer = TfidfVectorizer(**{**VECTORIZER, "min_df": 1})
        vectorizer.fit(texts + pairs)
    features = _side_by_side(vectorizer, texts, pairs) if pairs else vectorizer.transform(texts)
    _last_features.clear()
    _last_features.update(key=key, vectorizer=vectorizer, features=features)
    return vectorizer, features


def _side_by_side(vectorizer, texts: list[str], pairs: list[str | None]):
    """(texts, 2 x vocabulary): the first texts' features, then the second texts'."""
    from scipy.sparse import hstack

    return hstack([vectorizer.transform(texts), vectorizer.transform([p or "" for p in pairs])]).tocsr()
