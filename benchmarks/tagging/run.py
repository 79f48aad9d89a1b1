"""Compare taggers (`nlpft finetune --task tag`) on WNUT-16 NER (../shared/corpora/wnut16_ner.conll:
English tweets, 10 entity types, IOB2).

One fixed, seeded 80/10/10 split of the sentences (`split_sentences`, seed 13), written
once to train/valid/test CoNLL files; every model trains on the same files, for each of
--seeds:

  minilm        all-MiniLM-L6-v2 with the stock token-classification head
  minilm-crf    the same with --crf (a linear-chain CRF over the words' tag scores)
  bilstm-crf    BiLSTM-CRF over word2vec vectors trained by `nlpft embed train` on the
                split's training tokens (--w2v-extra adds austen + kjv)
  rnn-lm        the RNN LM (`nlpft lm train` on the split's training tokens, one sentence a
                line) as the encoder under the same BiLSTM-CRF

Reported per model: test entity F1 (micro, exact spans, seqeval), mean ± std over seeds,
its precision and recall, macro F1, per-type F1 (mean over seeds), training time, training
words/s (training words x epochs run / training time, which includes the per-epoch
validation), parameters, peak RSS of the training process.

In the same run, for the first seed's MiniLM model: `nlpft predict` against the stock
`pipeline("token-classification", aggregation_strategy="first")` (plain_pipeline.py), on
the same model directory and the same text file (every sentence of the corpus, one a line,
its words joined by spaces; --quick: the test sentences), each in its own process,
interleaved over --repeats, fp32 and batch size 32 both. Words/s are given for the whole
command (interpreter start, imports, model load, reading, tagging, writing) and after the
imports of torch and transformers' model and pipeline code (load, read, tag, write).

Timings need an otherwise idle machine: on a shared one, torch's threads wait on each
other (a BiLSTM step can slow down 50x); there, run with OMP_NUM_THREADS=1.

    python benchmarks/tagging/run.py                    # about 35 min on 2 cores
    python benchmarks/tagging/run.py --quick            # fewer epochs (see `settings`): about 20 min
    python benchmarks/tagging/run.py --models minilm bilstm-crf --seeds 13
    python benchmarks/tagging/run.py --smoke --results /tmp/tag-smoke   # every path once: under 2 min

Writes results.json and results.md under --results (--smoke writes nothing there unless
--results is given). --work DIR keeps the split, the vectors, the LM and the runs between
invocations (the vectors and the LM are reused; each run is replaced). Every number is
measured in the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness
from harness import nlpft as _nlpft
from harness import run as _run
from harness import shared_file as _find

_say = functools.partial(harness.say, "tagging")

MODELS = ("minilm", "minilm-crf", "bilstm-crf", "rnn-lm")
CORPUS = "wnut16_ner.conll"
SPLIT_SEED = 13
SMOKE_STEPS = 3

# `nlpft predict` through its CLI entry point, timed inside the process too. Before its clock
# starts it imports what plain_pipeline.py imports before its own (torch, transformers'
# model code, the pipeline), so both run_s cover the same steps: load, read, tag, write;
# nlpft's own modules count in its run_s.
_TIMED_PREDICT = """
import json, sys, time
started = time.perf_counter()
import torch
import transformers.modeling_utils
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
from nlpft.cli.main import main
imported = time.perf_counter()
code = main(["predict", "--model", sys.argv[1], "--input", sys.argv[2], "--out", sys.argv[3], "--batch-size", "32"])
if code:
    sys.exit(code)
print(json.dumps({"import_s": imported - started, "run_s": time.perf_counter() - imported}))
"""


# -- the split -------------------------------------------------------------------------------
def _write_lines(path: Path, sentences) -> None:
    path.write_text("".join(" ".join(s.tokens) + "\n" for s in sentences), encoding="utf-8")


def write_split(src: Path, folder: Path) -> dict[str, Path]:
    """`nlpft split --task tag` (train/valid/test.conll, and train.txt: the corpus of the
    word2vec vectors and the RNN LM, one sentence a line, its words joined by spaces), then
    in the same form test.txt and texts.txt (every sentence: predict's input)."""
    from nlpft.data.tagged import read_tagged

    paths = harness.write_split(src, folder, SPLIT_SEED, task="tag")
    paths["test_text"] = folder / "test.txt"
    _write_lines(paths["test_text"], read_tagged(paths["test"]))
    paths["texts"] = folder / "texts.txt"
    _write_lines(paths["texts"], read_tagged(src))
    return paths


def split_counts(split: dict) -> dict:
    from nlpft.data.tagged import read_tagged

    counts = {}
    for name in ("train", "valid", "test"):
        data = read_tagged(split[name])
        counts[name] = {"sentences": len(data), "words": data.num_tokens,
                        "entities": sum(data.entity_counts().values())}
    counts["entity_types"] = list(read_tagged(split["train"]).entity_types)
    counts["test_support"] = dict(read_tagged(split["test"]).entity_counts())
    return counts


# -- models ----------------------------------------------------------------------------------
def prepare(model: str, work: Path, split: dict, quick: bool, smoke: bool, w2v_extra: bool) -> str:
    """The --model value for `model`, training the vectors or the LM it needs first (once per --work)."""
    if model in ("minilm", "minilm-crf"):
        return "minilm"
    if model == "bilstm-crf":
        out = work / ("w2v-train-austen-kjv" if w2v_extra else "w2v-train") / ("smoke" if smoke else "full")
        if not out.exists():
            corpora = [str(split["train_text"])]
            if w2v_extra:
                corpora += [str(_find("austen.txt")), str(_find("kjv.txt"))]
            _say(f"word2vec on the training tokens{' + austen + kjv' if w2v_extra else ''} ...")
            _nlpft("embed", "train", "--algo", "word2vec", "--corpus", *corpora, "--out", str(out), "--dim", "100",
                   "--min-count", "1", "--epochs", "1" if smoke else "10", "--seed", "1", "--quiet")
        return str(out)
    if model == "rnn-lm":
        out = work / "rnn-lm-train" / ("smoke" if smoke else "quick" if quick else "full")
        if not out.exists():
            _say("RNN LM on the training tokens ...")
            length = ["--max-steps", "5"] if smoke else ["--epochs", "4" if quick else "8"]
            _nlpft("lm", "train", "--corpus", str(split["train_text"]), "--out", str(out), "--min-count", "1",
                   "--seed", "1", "--quiet", *length)
        return str(out)
    raise ValueError(model)


def settings(model: str, quick: bool, smoke: bool) -> list[str]:
    """`nlpft finetune` flags per model, beyond the shared data and seed flags."""
    crf = ["--crf"] if model != "minilm" else []
    if smoke:
        return [*crf, "--max-steps", str(SMOKE_STEPS), "--checkpoint-every", "1000"]
    if model in ("minilm", "minilm-crf"):
        return [*crf, "--epochs", "3" if quick else "5", "--lr", "5e-5"]
    return [*crf, "--epochs", "10" if quick else "20", "--batch-size", "32", "--patience", "4"]


def run_model(model: str, backbone: str, split: dict, counts: dict, seeds: list[int], quick: bool, smoke: bool,
              work: Path) -> dict:
    runs = []
    for seed in seeds:
        out = work / "runs" / f"{model}-{seed}"
        _say(f"{model}, seed {seed} ...")
        started = time.perf_counter()
        _nlpft("finetune", "--task", "tag", "--train", str(split["train"]), "--valid", str(split["valid"]),
               "--test", str(split["test"]), "--model", backbone, "--out", str(out), "--overwrite", "--seed", str(seed),
               "--quiet", *settings(model, quick, smoke))
        wall = time.perf_counter() - started
        m = json.loads((out / "metrics.json").read_text())
        test = m["test"]
        runs.append({"seed": seed, "out": str(out.relative_to(work)), "wall_s": wall, "entity_f1": test["micro_f1"],
                     "precision": test["micro_precision"], "recall": test["micro_recall"],
                     "macro_f1": test["macro_f1"], "token_accuracy": test["token_accuracy"],
                     "per_type_f1": {t: v["f1"] for t, v in test["per_type"].items()},
                     "train_s": m["train_time_s"], "epochs": m["epochs"], "steps": m["steps"],
                     "train_words_per_s": counts["train"]["words"] * m["epochs"] / m["train_time_s"],
                     "parameters": m["parameters"], "peak_rss_mib": m["peak_rss_mib"],
                     "numeric_precision": m.get("precision")})
        _say(f"  entity F1 {test['micro_f1']:.4f}, {m['train_time_s']:.0f} s, peak RSS {m['peak_rss_mib']:.0f} MiB")
    f1 = [r["entity_f1"] for r in runs]
    types = sorted({t for r in runs for t in r["per_type_f1"]})
    return {"model": model, "backbone": Path(backbone).name if model in ("bilstm-crf", "rnn-lm") else backbone,
            "settings": settings(model, quick, smoke), "runs": runs,
            "entity_f1_mean": statistics.mean(f1), "entity_f1_std": statistics.pstdev(f1),
            "precision_mean": statistics.mean(r["precision"] for r in runs),
            "recall_mean": statistics.mean(r["recall"] for r in runs),
            "macro_f1_mean": statistics.mean(r["macro_f1"] for r in runs),
            "per_type_f1_mean": {t: statistics.mean(r["per_type_f1"].get(t, 0.0) for r in runs) for t in types},
            "train_s_mean": statistics.mean(r["train_s"] for r in runs),
            "train_words_per_s_mean": statistics.mean(r["train_words_per_s"] for r in runs),
            "parameters": runs[0]["parameters"], "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
            "numeric_precision": runs[0]["numeric_precision"]}


# -- predict vs pipeline ---------------------------------------------------------------------
def _timed_child(cmd: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    line = _run(cmd)
    return time.perf_counter() - started, json.loads(line.strip().splitlines()[-1])


def predict_speed(model_dir: str, texts: Path, work: Path, repeats: int) -> dict:
    """Words/s of `nlpft predict` and of the stock pipeline on one model and text file, in
    alternating order (nlpft first on even repeats), each in a fresh process."""
    lines = texts.read_text(encoding="utf-8").splitlines()
    words = sum(len(line.split()) for line in lines)
    runs = {"nlpft": [], "pipeline": []}
    for r in range(repeats):
        for who in (("nlpft", "pipeline") if r % 2 == 0 else ("pipeline", "nlpft")):
            _say(f"predict speed, repeat {r + 1}/{repeats}: {who} ...")
            if who == "nlpft":
                wall, inner = _timed_child([sys.executable, "-c", _TIMED_PREDICT, model_dir, str(texts),
                                            str(work / "nlpft-predictions.jsonl")])
            else:
                wall, inner = _timed_child([sys.executable, str(HERE / "plain_pipeline.py"), "--model", model_dir,
                                            "--texts", str(texts), "--out", str(work / "pipeline-entities.jsonl")])
            runs[who].append({"wall_s": wall, "import_s": inner["import_s"], "run_s": inner["run_s"]})
    _say("predict agreement under aggregation_strategy=\"simple\" ...")
    _run([sys.executable, str(HERE / "plain_pipeline.py"), "--model", model_dir, "--texts", str(texts),
          "--out", str(work / "pipeline-simple-entities.jsonl"), "--aggregation", "simple"])
    ours = _entities(work / "nlpft-predictions.jsonl", "entities")
    result = {"model": Path(model_dir).name, "texts": texts.name, "lines": len(lines), "words": words, "repeats": repeats,
              "runs": runs,
              "entities": _agreement(ours, _entities(work / "pipeline-entities.jsonl", None)),
              "entities_simple": _agreement(ours, _entities(work / "pipeline-simple-entities.jsonl", None))}
    for key in ("wall_s", "run_s"):
        ours = [words / x[key] for x in runs["nlpft"]]
        theirs = [words / x[key] for x in runs["pipeline"]]
        result[key.removesuffix("_s")] = {
            "nlpft_words_per_s": statistics.median(ours), "pipeline_words_per_s": statistics.median(theirs),
            "ratio_of_medians": statistics.median(ours) / statistics.median(theirs),
            "median_pair_ratio": statistics.median(a / b for a, b in zip(ours, theirs))}
    return result


def _agreement(ours: set, theirs: set) -> dict:
    return {"nlpft": len(ours), "pipeline": len(theirs), "identical": len(ours & theirs)}


def _entities(path: Path, key: str | None) -> set[tuple]:
    """(text index, type, start, end) of every entity in a JSON-lines file of one record per
    text: the entity list itself, or an object holding it under `key`."""
    found = set()
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        found.update((index, e["type"], e["start"], e["end"]) for e in (record[key] if key else record))
    return found


# -- report ----------------------------------------------------------------------------------
MINILM_TARGET_F1 = 0.35


def _target_line(rows: list[dict]) -> str | None:
    """The issue's targets (reported, not asserted): MiniLM at or above 0.35 entity F1 and
    above the BiLSTM-CRF."""
    f1 = {row["model"]: row["entity_f1_mean"] for row in rows}
    if "minilm" not in f1:
        return None
    relation = "≥" if f1["minilm"] >= MINILM_TARGET_F1 else "<"
    checks = [f"MiniLM entity F1 {f1['minilm']:.4f} {relation} {MINILM_TARGET_F1} target"]
    if "bilstm-crf" in f1:
        above = f1["minilm"] > f1["bilstm-crf"]
        checks.append(f"{'above' if above else 'not above'} the BiLSTM-CRF ({f1['bilstm-crf']:.4f})")
    return "Targets: " + "; ".join(checks) + "."


def _md(results: dict) -> str:
    s = results["split"]
    out = [f"# Tagging benchmark: WNUT-16 NER ({len(s['entity_types'])} entity types, IOB2)", "",
           results["machine"], "",
           f"Split ({CORPUS}, seed {SPLIT_SEED}): {s['train']['sentences']} train / {s['valid']['sentences']} valid / "
           f"{s['test']['sentences']} test sentences ({s['train']['words']:,} / {s['valid']['words']:,} / "
           f"{s['test']['words']:,} words; {s['test']['entities']} test entities); seeds {results['seeds']}"
           + ("; --quick settings" if results["quick"] else "")
           + ("; --smoke: not results" if results["smoke"] else ""),
           "", "Test entity F1 is micro-averaged over exact spans (seqeval, conlleval rules).", "",
           "| model | entity F1 | P | R | macro F1 | train time | train words/s | precision | parameters | peak RSS |",
           "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for row in results["rows"]:
        out.append(f"| {row['model']} | {row['entity_f1_mean']:.4f} ± {row['entity_f1_std']:.4f} "
                   f"| {row['precision_mean']:.4f} | {row['recall_mean']:.4f} | {row['macro_f1_mean']:.4f} "
                   f"| {row['train_s_mean']:.0f} s | {row['train_words_per_s_mean']:,.0f} "
                   f"| {row['numeric_precision'] or 'n/a'} | {row['parameters']:,} "
                   f"| {row['peak_rss_mib_max']:.0f} MiB |")
    target = _target_line(results["rows"])
    if target:
        out += ["", target]
    types = sorted({t for row in results["rows"] for t in row["per_type_f1_mean"]})
    if types:
        out += ["", "Test F1 per entity type (mean over seeds; support: test entities of the type):", "",
                "| type | support | " + " | ".join(row["model"] for row in results["rows"]) + " |",
                "|---|---:|" + "---:|" * len(results["rows"])]
        support = s["test_support"]
        for t in types:
            out.append(f"| {t} | {support.get(t, 0)} | "
                       + " | ".join(f"{row['per_type_f1_mean'].get(t, 0.0):.3f}" for row in results["rows"]) + " |")
    if results.get("predict_speed"):
        p = results["predict_speed"]
        out += ["", "## `nlpft predict` vs `pipeline(\"token-classification\")`", "",
                (f"Model: the MiniLM run of seed {results['seeds'][0]}; texts: {p['texts']} ({p['lines']:,} sentences, "
                f"one a line, {p['words']:,} words); batch size 32, fp32 both; {p['repeats']} interleaved repeats, "
                "each in a fresh process; medians. Whole command: interpreter start to exit; after imports: "
                "from after importing torch and transformers' model and pipeline code (the same in both) to exit."), "",
                "| measured | nlpft words/s | pipeline words/s | nlpft / pipeline |", "|---|---:|---:|---:|",
                (f"| whole command | {p['wall']['nlpft_words_per_s']:,.0f} | {p['wall']['pipeline_words_per_s']:,.0f} "
                f"| **{p['wall']['ratio_of_medians']:.2f}** |"),
                (f"| after imports (load, read, tag, write) | {p['run']['nlpft_words_per_s']:,.0f} "
                f"| {p['run']['pipeline_words_per_s']:,.0f} | **{p['run']['ratio_of_medians']:.2f}** |"), "",
                (f"Entities found: nlpft {p['entities']['nlpft']:,}, pipeline {p['entities']['pipeline']:,}, "
                 f"identical (same text, type and characters) {p['entities']['identical']:,}. nlpft splits each line "
                 "into words by its rule and reads each word's first subword; the pipeline, with "
                 "aggregation_strategy=\"first\", each word's first subword too. With aggregation_strategy=\"simple\" "
                 "(each subword's own tag, untimed): pipeline "
                 f"{p['entities_simple']['pipeline']:,}, identical {p['entities_simple']['identical']:,}.")]
    out += ["", (f"Whole run, including the word2vec vectors and the RNN LM: {results['total_wall_s'] / 60:.1f} min "
                f"(`{results['command']}`)"), "",
            "Corpora: word2vec: " + ("the training sentences + austen + kjv" if results["w2v_extra"]
                                     else "the training sentences only") + " (100-d, min count 1, lowercased); "
            "RNN LM: the training sentences only.", "",
            "Settings per model: " + "; ".join(f"{r['model']}: {' '.join(r['settings'])}" for r in results["rows"])]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[13, 14, 15])
    ap.add_argument("--quick", action="store_true",
                    help="fewer epochs: 3 for MiniLM (5 otherwise), 10 for the BiLSTM rows (20), 4 for the RNN LM's "
                         "pretraining (8)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"run every path once: the first seed only, {SMOKE_STEPS} training steps per model, a 5-step "
                         "LM, 1 word2vec epoch, 1 predict repeat on the test texts; the numbers are not results")
    ap.add_argument("--w2v-extra", action="store_true", help="train the word2vec vectors on austen + kjv too")
    ap.add_argument("--repeats", type=int, default=3,
                    help="predict-vs-pipeline repeats (default: 3), on every sentence of the corpus (--quick: the "
                         "test sentences)")
    ap.add_argument("--no-predict-speed", action="store_true", help="skip the predict-vs-pipeline comparison")
    ap.add_argument("--results", type=Path, default=None, help="default: benchmarks/tagging/results (not with --smoke)")
    ap.add_argument("--work", type=Path, default=None, help="keep the split, vectors, LM and runs here between runs")
    args = ap.parse_args()
    seeds = args.seeds[:1] if args.smoke else args.seeds
    results_dir = args.results or (None if args.smoke else HERE / "results")

    results = {"machine": harness.machine(), "seeds": seeds, "quick": args.quick, "smoke": args.smoke,
               "w2v_extra": args.w2v_extra, "rows": [],
               "command": " ".join(["python benchmarks/tagging/run.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        started = time.perf_counter()
        split = write_split(_find(CORPUS), work / "split")
        results["split"] = split_counts(split)
        for model in args.models:
            backbone = prepare(model, work, split, args.quick, args.smoke, args.w2v_extra)
            results["rows"].append(run_model(model, backbone, split, results["split"], seeds, args.quick, args.smoke,
                                             work))
        if "minilm" in args.models and not args.no_predict_speed:
            minilm = next(r for r in results["rows"] if r["model"] == "minilm")
            texts = split["test_text"] if args.smoke or args.quick else split["texts"]
            results["predict_speed"] = predict_speed(str(work / minilm["runs"][0]["out"]), texts, work,
                                                     1 if args.smoke else args.repeats)
        results["total_wall_s"] = time.perf_counter() - started
        _say(f"done in {results['total_wall_s'] / 60:.1f} min")
    report = _md(results)
    if results_dir is not None:
        harness.write_results(results_dir, results, report)
    print(report)


if __name__ == "__main__":
    main()
