"""nlpft from Python: each training command a function, its options as keywords.

    import nlpft
    vectors = nlpft.embed.train(corpus="austen.txt", algo="glove", out="runs/glove")
    result = nlpft.finetune(train="data.csv", model="minilm", epochs=3, out="runs/clf")
    result.metrics["accuracy"], result.path
    clf = nlpft.load("runs/clf"); clf.predict(["great film", "dull mess"])
    report = nlpft.compare(["runs/clf", "runs/clf-tfidf"], out="report"); report.best, report.html

A function runs what its command runs: `nlpft finetune` and `nlpft.finetune(...)` both
call `nlpft.cli.finetune.finetune_from_args`, so the two cannot drift. Its keywords are the
command's options under their config-file names (the long flag without its dashes, `-` as
`_`: `max_steps`, `batch_size`; `max_memory_gb` for --max-memory), read the way a config
file is read (`nlpft.cli.main.apply_option_values`): each value passes its flag's type and
choices, a list for an option that takes several, True/False for a switch. The keywords
are taken from the command's parser, which the option dataclasses generate (finetune:
`FinetuneOptions` and the plug-ins' own; `EmbedTrainOptions`, `LMTrainOptions`,
`PretrainOptions`), so an option added to a command is a keyword here with no edit. An
unknown keyword names the closest known one.

Bad input raises `nlpft.UserInputError`, never SystemExit. A call leaves the process as it
found it (`nlpft.api.state`: torch threads, random states, loggers, signal handlers,
environment), so it can be called again. Ctrl-C or SIGTERM during training writes a
checkpoint and raises KeyboardInterrupt; `resume=True` continues. Unlike the command
line, a call does not tune the process's allocator (`nlpft.training.allocator`), which
could not be undone.

The API is the top layer, above `nlpft.cli`: it reads the commands' parsers and calls their
run functions, and imports nothing heavy until called.
"""

from nlpft.api import embed
from nlpft.api.commands import (
    compare,
    finetune,
    parse_options,
    pretrain,
    train_embeddings,
    train_language_model,
)
from nlpft.api.predictor import Prediction, Predictor, load
from nlpft.api.results import CompareResult, EmbeddingResult, FinetuneResult, RunResult

__all__ = ["CompareResult", "EmbeddingResult", "FinetuneResult", "Prediction", "Predictor", "RunResult", "compare",
           "embed", "finetune", "load", "parse_options", "pretrain", "train_embeddings", "train_language_model"]
