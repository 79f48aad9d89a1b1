"""nlpft: NLP pretraining and fine-tuning, from the command line and from Python.

    import nlpft
    vectors = nlpft.embed.train(corpus="austen.txt", algo="glove", out="runs/glove")
    result = nlpft.finetune(train="data.csv", model="minilm", epochs=3, out="runs/clf")
    clf = nlpft.load("runs/clf"); clf.predict(["great film", "dull mess"])
    report = nlpft.compare(["runs/clf", "runs/clf-tfidf"], out="report")

The functions live in `nlpft.api` (see there) and load on first use, so `import nlpft`
stays cheap. Two entry points share their name with a package of models: the package
`nlpft.finetune` is made callable here, and `nlpft.lm.train` is set here, so they work
whichever of the package's modules were imported first; the packages themselves know
nothing of the API, which sits above the command line.
"""

from types import ModuleType as _ModuleType

from nlpft import finetune, lm  # cheap: neither package imports anything itself
from nlpft.errors import UserInputError
from nlpft.version import __version__

_API_NAMES = ("compare", "embed", "load", "pretrain", "CompareResult", "EmbeddingResult", "FinetuneResult",
              "Prediction", "Predictor", "RunResult")

__all__ = ["CompareResult", "EmbeddingResult", "FinetuneResult", "Prediction", "Predictor", "RunResult",
           "UserInputError", "__version__", "compare", "embed", "finetune", "lm", "load", "pretrain"]


class _FinetunePackage(_ModuleType):
    def __call__(self, **options):
        """`nlpft finetune` from Python: its options as keywords (train=..., out=...,
        model="tfidf", epochs=3, ...). Returns an `nlpft.api.FinetuneResult`."""
        from nlpft.api import finetune

        return finetune(**options)


def _train_language_model(**options):
    """`nlpft lm train` from Python: its options as keywords (corpus=..., out=...,
    max_steps=...). Returns an `nlpft.api.RunResult` (path, metrics, files)."""
    from nlpft.api import train_language_model

    return train_language_model(**options)


finetune.__class__ = _FinetunePackage
lm.train = _train_language_model


def __getattr__(name: str):
    if name in _API_NAMES:
        from nlpft import api

        return getattr(api, name)
    raise AttributeError(f"module 'nlpft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
