"""Benchmark the RNN LM on Jane Austen (../shared/corpora/austen.txt).

One tokenizer and one seeded train/valid/test split (nlpft's rule, seed 1) for every row:
the vocabulary of a word2vec run on the same corpus (min count 5), so runs with and
without --init-vectors are comparable. Rows:

- small (2x200) tied + dropout, with and without --init-vectors; the untied, undropped
  small baseline;
- medium (2x650) tied + dropout, with and without --init-vectors;
- speed: nlpft's loop vs the plain PyTorch word_language_model loop (2-layer LSTM 200,
  bptt 35, batch 20, dropout 0.2, untied, SGD lr 20) on the same ids, interleaved
  repeats, tokens/s inside training steps; and bf16 autocast vs fp32 (speed and test
  perplexity of the trained small model).

    python benchmarks/lm/run.py                 # the --quick budget below (~20 min on 2 cores)
    python benchmarks/lm/run.py --small-epochs 6 --medium-epochs 3

Writes results.json and results.md under --results. Every number is measured in the run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/harness.py
import harness  # noqa: E402
from harness import nlpft as _nlpft  # noqa: E402
from harness import run as _run  # noqa: E402

DROPOUT_OFF = ["--embedding-dropout", "0", "--input-dropout", "0", "--hidden-dropout", "0", "--output-dropout", "0"]


def _train(label: str, corpus: str, out: Path, tokenizer: Path, extra: list[str]) -> dict:
    print(f"[lm] {label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    _nlpft("lm", "train", "--corpus", corpus, "--out", str(out), "--tokenizer", str(tokenizer), "--quiet",
           "--seed", "1", *extra)
    wall = time.perf_counter() - started
    m = json.loads((out / "metrics.json").read_text())
    row = {"label": label, "wall_s": wall, "valid_ppl": m["valid"]["perplexity"], "test_ppl": m["test"]["perplexity"],
           "test_bits_per_token": m["test"]["bits_per_token"], "train_tokens_per_s": m["train_tokens_per_s"],
           "eval_tokens_per_s": m["eval_tokens_per_s"], "peak_rss_mib": m["peak_rss_bytes"] / 2**20,
           "parameters": m["parameters"], "steps": m["steps"], "epochs": m["epochs_completed"],
           "init_coverage": (m["init_vectors"] or {}).get("coverage")}
    print(f"  {json.dumps(row)}", file=sys.stderr, flush=True)
    return row


def _speed_comparison(corpus: str, tokenizer: Path, train_ids: Path, vocab: int, work: Path, repeats: int,
                      steps: int) -> dict:
    """Same model shape, data and optimiser; tokens/s inside training steps, interleaved."""
    ours, reference = [], []
    flags = ["--embedding-dim", "200", "--hidden-dim", "200", "--layers", "2", "--no-tie", "--embedding-dropout",
             "0", "--input-dropout", "0.2", "--hidden-dropout", "0.2", "--output-dropout", "0.2",
             "--optimizer", "sgd", "--lr", "20", "--clip", "0.25", "--bptt", "35", "--batch-size", "20",
             "--max-steps", str(steps), "--checkpoint-every", str(10 * steps)]
    for r in range(repeats):
        for who in (["nlpft", "reference"] if r % 2 == 0 else ["reference", "nlpft"]):
            if who == "nlpft":
                out = work / f"speed-{r}"
                _nlpft("lm", "train", "--corpus", corpus, "--out", str(out), "--tokenizer", str(tokenizer),
                       "--quiet", *flags)
                ours.append(json.loads((out / "metrics.json").read_text())["train_tokens_per_s"])
            else:
                line = _run([sys.executable, str(HERE / "reference_loop.py"), "--train", str(train_ids),
                             "--vocab", str(vocab), "--steps", str(steps)])
                reference.append(json.loads(line)["tokens_per_s"])
    return {"repeats": repeats, "steps": steps, "nlpft_tokens_per_s": ours, "reference_tokens_per_s": reference,
            "ratio_of_medians": statistics.median(ours) / statistics.median(reference),
            "median_pair_ratio": statistics.median(a / b for a, b in zip(ours, reference))}


def _bf16_comparison(model_dir: Path, test_ids: Path, corpus: str, tokenizer: Path, work: Path, steps: int) -> dict:
    import numpy as np
    import torch

    from nlpft.lm.data import batchify
    from nlpft.lm.files import load_model_dir
    from nlpft.lm.trainer import evaluate_loss

    model, _ = load_model_dir(model_dir)
    rows = batchify(np.load(test_ids, mmap_mode="r"), 10)
    result = {}
    for precision in ("fp32", "bf16"):
        started = time.perf_counter()
        loss, tokens = evaluate_loss(model, rows, 35, precision)
        result[f"test_ppl_{precision}"] = math.exp(loss)
        result[f"eval_tokens_per_s_{precision}"] = tokens / (time.perf_counter() - started)
    result["ppl_change"] = result["test_ppl_bf16"] / result["test_ppl_fp32"] - 1
    for precision in ("fp32", "bf16"):
        out = work / f"train-{precision}"
        _nlpft("lm", "train", "--corpus", corpus, "--out", str(out), "--tokenizer", str(tokenizer), "--quiet",
               "--max-steps", str(steps), "--precision", precision)
        result[f"train_tokens_per_s_{precision}"] = json.loads((out / "metrics.json").read_text())["train_tokens_per_s"]
    result["threads"] = torch.get_num_threads()
    return result


def _markdown(report: dict) -> str:
    lines = [f"# RNN LM benchmark: {report['corpus']}", "",
             f"{report['machine']}; split (tokens) {report['splits']}; vocabulary {report['vocab_size']:,} "
             f"(word2vec min count 5 tokenizer, shared by every row)", "",
             "| model | epochs | steps | valid ppl | test ppl | test bits/token | train tok/s | eval tok/s | "
             "params | peak RSS MiB | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['label']} | {r['epochs']} | {r['steps']} | {r['valid_ppl']:.1f} | {r['test_ppl']:.1f} | "
                     f"{r['test_bits_per_token']:.3f} | {r['train_tokens_per_s']:,.0f} | {r['eval_tokens_per_s']:,.0f} | "
                     f"{r['parameters']:,} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.0f} |")
    s = report["speed"]
    if s is None:
        return "\n".join(lines) + "\n"
    lines += ["", "## Training speed vs the plain PyTorch reference loop", "",
              f"2-layer LSTM 200, untied, dropout 0.2, SGD lr 20, bptt 35, batch 20, {s['steps']} steps, "
              f"{s['repeats']} interleaved repeats; tokens/s inside training steps.", "",
              f"- nlpft: {', '.join(f'{x:,.0f}' for x in s['nlpft_tokens_per_s'])}",
              f"- reference: {', '.join(f'{x:,.0f}' for x in s['reference_tokens_per_s'])}",
              f"- ratio nlpft/reference: **{s['ratio_of_medians']:.3f}** (ratio of medians; median of per-repeat "
              f"ratios {s['median_pair_ratio']:.3f}; target ≥ 1.0)"]
    b = report["bf16"]
    lines += ["", "## bf16 autocast vs fp32 (small tied model above)", "",
              f"- test perplexity fp32 {b['test_ppl_fp32']:.2f}, bf16 {b['test_ppl_bf16']:.2f} "
              f"({b['ppl_change']:+.2%})",
              f"- eval tokens/s fp32 {b['eval_tokens_per_s_fp32']:,.0f}, bf16 {b['eval_tokens_per_s_bf16']:,.0f}",
              f"- train tokens/s fp32 {b['train_tokens_per_s_fp32']:,.0f}, bf16 {b['train_tokens_per_s_bf16']:,.0f}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="austen")
    p.add_argument("--small-epochs", type=int, default=2)
    p.add_argument("--medium-epochs", type=int, default=1)
    p.add_argument("--medium-max-steps", type=int, default=500, help="cap per medium run (0: whole epochs)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--speed-steps", type=int, default=200)
    p.add_argument("--skip-medium", action="store_true", help="only the small rows")
    p.add_argument("--bf16-row", action="store_true", help="also train the small tied model under bf16 autocast")
    p.add_argument("--skip-speed", action="store_true", help="no reference-loop or bf16 comparison")
    p.add_argument("--only-speed", action="store_true", help="only the reference-loop comparison")
    p.add_argument("--results", default=str(HERE / "results"))
    args = p.parse_args()

    from nlpft.data.registry import resolve_corpus
    from nlpft.errors import UserInputError
    from nlpft.lm.data import encode_corpus
    from nlpft.tokenization import WordTokenizer

    try:
        text = resolve_corpus(args.corpus)
    except UserInputError as exc:
        print(f"skipping: {exc}", file=sys.stderr)
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vectors = {}
        for dim in ((200,) if args.skip_medium or args.only_speed else (200, 650)):
            vectors[dim] = work / f"w2v{dim}"
            _nlpft("embed", "train", "--corpus", args.corpus, "--out", str(vectors[dim]), "--dim", str(dim), "--quiet")
        tokenizer = vectors[200] / "tokenizer.json"
        data_dir = work / "data"
        splits = encode_corpus(text, WordTokenizer.load(tokenizer), data_dir, seed=1)  # the split every run uses

        small = ["--embedding-dim", "200", "--hidden-dim", "200", "--epochs", str(args.small_epochs)]
        if args.only_speed:
            speed = _speed_comparison(args.corpus, tokenizer, data_dir / "train.npy", splits.vocab_size, work,
                                      args.repeats, args.speed_steps)
            print(json.dumps(speed, indent=2))
            out = Path(args.results)
            out.mkdir(parents=True, exist_ok=True)
            (out / "speed.json").write_text(json.dumps(speed, indent=2) + "\n")
            return 0
        rows.append(_train("small 2x200, tied + dropout", args.corpus, work / "small", tokenizer, small))
        if args.bf16_row:
            rows.append(_train("small 2x200, tied + dropout, trained in bf16", args.corpus, work / "small-bf16",
                               tokenizer, small + ["--precision", "bf16"]))
        rows.append(_train("small 2x200, tied + dropout, --init-vectors", args.corpus, work / "small-init", tokenizer,
                           small + ["--init-vectors", str(vectors[200])]))
        rows.append(_train("small 2x200, untied, no dropout (baseline)", args.corpus, work / "small-base", tokenizer,
                           small + ["--no-tie", *DROPOUT_OFF]))
        medium = ["--embedding-dim", "650", "--hidden-dim", "650", "--epochs", str(args.medium_epochs)]
        if args.medium_max_steps:
            medium += ["--max-steps", str(args.medium_max_steps)]
        if not args.skip_medium:
            rows.append(_train("medium 2x650, tied + dropout", args.corpus, work / "medium", tokenizer, medium))
            rows.append(_train("medium 2x650, tied + dropout, --init-vectors", args.corpus, work / "medium-init",
                               tokenizer, medium + ["--init-vectors", str(vectors[650])]))
        speed = bf16 = None
        if not args.skip_speed:
            print("[lm] speed vs reference loop ...", file=sys.stderr, flush=True)
            speed = _speed_comparison(args.corpus, tokenizer, data_dir / "train.npy", splits.vocab_size, work,
                                      args.repeats, args.speed_steps)
            print(f"  {json.dumps(speed)}", file=sys.stderr, flush=True)
            print("[lm] bf16 vs fp32 ...", file=sys.stderr, flush=True)
            bf16 = _bf16_comparison(work / "small", data_dir / "test.npy", args.corpus, tokenizer, work,
                                    args.speed_steps)
            print(f"  {json.dumps(bf16)}", file=sys.stderr, flush=True)
        report = {"corpus": text.name, "machine": harness.machine(),
                  "splits": splits.lengths(), "vocab_size": splits.vocab_size, "rows": rows, "speed": speed,
                  "bf16": bf16, "settings": {k: v for k, v in vars(args).items() if k != "results"}}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "results.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
