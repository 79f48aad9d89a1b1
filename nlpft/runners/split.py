"""`nlpft split`: the train/valid/test split `nlpft finetune` makes, written as files.

`finetune --train FILE --seed N` splits FILE itself when --valid/--test are not given; this
writes the very same split (same reading, same task, same seeded stratified rule, through
the task's own `read_splits`) so that it can be fixed, inspected, shared, and its training
text used as a corpus (`train.txt`) without any test row reaching a language model or
word vectors trained on it. An experiment's `data:train` corpus is this command's output.

    OUT/train.csv valid.csv test.csv    (--task tag: .conll) the rows, in the columns read
    OUT/train.txt                       the training text, one text a line
    OUT/split.json                      source, seed, fractions, rows per part, files
"""

from __future__ import annotations

import sys
from pathlib import Path

from nlpft.finetune.options import FinetuneOptions
from nlpft.finetune.tasks.base import SPLIT_CORPUS_FILE
from nlpft.runners.output import RunOutput, write_json

SPLIT_FILE = "split.json"


def split(opts: FinetuneOptions) -> Path:
    """Read and check `opts.train` (and --valid/--test where given) as `finetune` does, split
    it with `opts.data_split_seed`, write the parts under `opts.out`; returns OUT."""
    from nlpft.data.sources import input_path
    from nlpft.finetune.tasks import task_of

    opts, task = task_of(opts)
    output = RunOutput(opts.out, overwrite=opts.overwrite, command="split",
                       inputs=[input_path(opts.train), input_path(opts.valid), input_path(opts.test)])
    splits = task.read_splits(opts, output.final.parent if output.final.parent.exists() else None, _warn)
    rows = {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)}
    work = output.open()
    with output.cleaned_up_on_error():
        files = task.write_split(work, splits)
        fractions = splits.fractions  # of the rows of --train, as read_splits held them out
        write_json(work / SPLIT_FILE, {
            "source": {"train": opts.train, "valid": opts.valid, "test": opts.test}, "task": opts.task,
            "seed": opts.data_split_seed if fractions else None, "fractions": fractions, "rows": rows,
            "files": {**files, "corpus": SPLIT_CORPUS_FILE}, "skipped": splits.skipped})
        final = output.publish()
    print(f"split: {rows['train']:,} train / {rows['valid']:,} valid / {rows['test']:,} test rows"
          + (f" (seed {opts.data_split_seed})" if fractions else "") + f" -> {final}", file=sys.stderr)
    return final


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)
