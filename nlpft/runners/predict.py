"""`nlpft predict | evaluate`: a fine-tuned model (the --out directory of `nlpft finetune`)
on new rows. The model directory's task reads the input and judges the scores; its
backbone loads the model (`nlpft.finetune.inference`)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.options import EvaluateOptions, PredictOptions
from nlpft.options import check_options
from nlpft.runners.output import RunOutput, place_errors_reported, write_json


def predict(model_dir: str, input_path: str | None, text: str | None, out: str | None,
            text_col: str | None = None, batch_size: int = 32, text_pair: str | None = None,
            text_pair_col: str | None = None, runtime: str = "auto", precision: str = "auto",
            threads: int | None = None) -> dict:
    return run_predict(PredictOptions(model=model_dir, input=input_path, text=text, out=out, text_col=text_col,
                                      batch_size=batch_size, text_pair=text_pair, text_pair_col=text_pair_col,
                                      runtime=runtime, precision=precision, threads=threads))


def load_model(opts: PredictOptions | EvaluateOptions):
    """The model of `opts.model`, run as --runtime, --precision and --threads say; a
    --precision bf16 the ONNX runtime cannot honour is reported, not silently dropped."""
    from nlpft.finetune.inference import load_for_inference

    loaded = load_for_inference(opts.model, runtime=opts.runtime, precision=opts.precision, threads=opts.threads)
    if loaded.runtime == "onnx" and opts.precision == "bf16":
        print(f"--precision bf16 applies to the torch runtime; ONNX Runtime runs {opts.model}'s export as written "
              f"({loaded.meta['onnx'].get('quantization') or 'fp32'})", file=sys.stderr)
    return loaded


def run_predict(opts: PredictOptions) -> dict:
    """{"rows", "scores", "lines" (predict --text: what to print), "skipped", "truncated",
    "max_length", "task"} for the rows of --input or --text; --out gets the predictions."""
    check_options(opts)
    loaded = load_model(opts)
    task = loaded.task
    if (opts.input is None) == (opts.text is None):
        raise UserInputError("pass either --input FILE or --text TEXT")
    if opts.out is not None:
        _check_predictions_file(Path(opts.out), opts.input)
    skipped = []
    if opts.text is not None:
        rows = rows_from_texts(loaded, [opts.text], [opts.text_pair])
    else:
        if opts.out is None:
            raise UserInputError("--input needs --out FILE for the predictions")
        if opts.text_pair is not None:
            raise UserInputError("--text-pair goes with --text; with --input, the pair is a column "
                                 "(--text-pair-col)")
        data = task.read_file(opts.input, {"text_col": opts.text_col, "text_pair_col": opts.text_pair_col},
                              require_label=False)
        rows, skipped = list(data), list(data.skipped_rows)
    scores, truncated = loaded.score(rows, batch_size=opts.batch_size)
    if opts.out is not None:
        out = Path(opts.out)
        with place_errors_reported(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            task.write_predictions(out, rows, scores, gold=False)
    return {"rows": rows, "scores": scores, "decided": task.decide(scores), "names": task.label_names,
            "task": task.name, "lines": task.describe_row(rows[0], scores[0]) if opts.text is not None else [],
            "skipped": skipped, "truncated": truncated, "max_length": loaded.meta.get("max_length")}


def rows_from_texts(loaded, texts: list[str], text_pairs: list[str | None], numbered: bool = False) -> list:
    """The rows `loaded`'s task makes of texts given directly (predict --text, the Python
    API); `numbered`: an error names the text's position (texts[3]: ...)."""
    rows = []
    for position, (text, text_pair) in enumerate(zip(texts, text_pairs, strict=True)):
        try:
            rows += loaded.task.rows_from_text(text, text_pair, str(loaded.model_dir))
        except UserInputError as exc:
            raise (UserInputError(f"texts[{position}]: {exc}") if numbered else exc) from None
    return rows


def _check_predictions_file(out: Path, input_path: str | None) -> None:
    """A predictions file replaces a file, never a directory nor the input it is made from."""
    if out.is_dir():
        raise UserInputError(f"{out}: is a directory; pass a file name for the predictions CSV to --out, "
                             f"e.g. {out / 'predictions.csv'}")
    if input_path is not None and out.exists() and os.path.exists(input_path) and os.path.samefile(out, input_path):
        raise UserInputError(f"--out {out} is the --input file; pass another file for the predictions")


def evaluate(model_dir: str, input_path: str, out: str | None = None, text_col: str | None = None,
             label_col: str | None = None, batch_size: int = 32, text_pair_col: str | None = None,
             normalize_labels: bool = False, overwrite: bool = False, runtime: str = "auto", precision: str = "auto",
             threads: int | None = None) -> dict:
    """Metrics of `model_dir` on `input_path`. Labels are merged by case as in training when
    the model was trained with normalize_labels, or when `normalize_labels` is given. With
    `out`, also a report directory, written like every nlpft output (an earlier one there
    is replaced only with `overwrite`)."""
    return run_evaluate(EvaluateOptions(model=model_dir, input=input_path, out=out, text_col=text_col,
                                        label_col=label_col, batch_size=batch_size, text_pair_col=text_pair_col,
                                        normalize_labels=normalize_labels, overwrite=overwrite, runtime=runtime,
                                        precision=precision, threads=threads))


def run_evaluate(opts: EvaluateOptions, loaded=None) -> dict:
    """Metrics of the model `opts.model` (already loaded: `loaded`) on `opts.input`."""
    check_options(opts)
    if loaded is None:
        loaded = load_model(opts)
    task = loaded.task
    task.normalize_labels = task.normalize_labels or opts.normalize_labels
    output = (RunOutput(opts.out, overwrite=opts.overwrite, command="evaluate", inputs=[opts.model, opts.input])
              if opts.out else None)
    data = task.read_file(opts.input, {"text_col": opts.text_col, "label_col": opts.label_col,
                                       "text_pair_col": opts.text_pair_col}, require_label=True)
    rows = task.check_rows(list(data), opts.input)
    if output is not None:
        output.open()
    with output.cleaned_up_on_error() if output is not None else contextlib.nullcontext():
        scores, truncated = loaded.score(rows, batch_size=opts.batch_size)
        result = task.metrics(rows, scores)
        intervals = task.confidence_intervals(rows, scores, seed=(loaded.meta.get("options") or {}).get("seed", 1))
        if intervals is not None:
            result["confidence_intervals"] = intervals
        result["truncated"] = truncated
        if output is not None:
            from nlpft.finetune.outputs import write_evaluation

            write_json(output.partial / "metrics.json", result)
            write_evaluation(output.partial, str(opts.model), task, rows, scores, result)
            output.publish()
    result["headline"] = task.headline(result)
    return result
