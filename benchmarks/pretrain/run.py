"""Benchmark `nlpft pretrain` on Jane Austen and the King James Bible (../shared/corpora).

Parts (all by default; pick with --parts):

- gpt-austen: a tiny GPT-2 pretrained by `nlpft pretrain` on austen for a fixed number of
  steps (about 10 minutes on 2 cores); samples from it; and its perplexity next to the RNN
  LM's (`nlpft lm train`, defaults) on the same held-out text. The two use different
  tokenizers (byte-level BPE against words with [UNK]), so both are reported per word:
  total nats over the test text / (words + line ends), the RNN LM's unit. The RNN LM's
  figure is flattered by [UNK] (rare words collapse into one cheap id); its OOV rate is
  printed next to it.
- austen+kjv: tiny GPT-2 and tiny BERT on austen + kjv for the same token budget:
  tokens/s, peak RSS, validation perplexity (BERT: MLM loss on fixed masks).
- overhead: nlpft's wrapper against the same Trainer configuration written by hand
  (plain_trainer.py, no nlpft import) on the same tokenizer and text; interleaved repeats,
  time inside `Trainer.train()`.
- dapt: MiniLM continued pretraining on kjv. MiniLM ships no MLM head, so a head is first
  fitted on general news text (gensim's Lee corpus) with the encoder frozen; the kjv test
  MLM loss of that model is "before"; then the whole model is pretrained on kjv training
  text and measured on the same fixed masks ("after").

Held-out text: austen and kjv are cut into 200-line blocks, a seeded draw puts 10% of the
blocks into a test file; models train on the rest (their own validation split comes from
that), so the test text is never trained on.

    python benchmarks/pretrain/run.py                     # everything, ~35 min on 2 cores
    python benchmarks/pretrain/run.py --parts overhead --repeats 3

Writes results.json and results.md under --results. Every number is measured in the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
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
from harness import shared_file as _find_corpus  # noqa: E402

_say = functools.partial(harness.say, "pretrain")

PARTS = ("gpt-austen", "austen+kjv", "overhead", "dapt")


def split_text(src: Path, folder: Path, test_fraction: float = 0.1, seed: int = 7) -> tuple[Path, Path]:
    """(train file, test file): 200-line blocks, a seeded draw per block."""
    rng = random.Random(seed)
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    train, test = [], []
    for start in range(0, len(lines), 200):
        (test if rng.random() < test_fraction else train).extend(lines[start:start + 200])
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{src.stem}.train.txt", folder / f"{src.stem}.test.txt"
    paths[0].write_text("".join(train), encoding="utf-8")
    paths[1].write_text("".join(test), encoding="utf-8")
    return paths


def word_units(path: Path) -> int:
    """Words + line ends, as the RNN LM counts tokens (nlpft's word tokenizer)."""
    from nlpft.tokenization import WordTokenizer

    words = WordTokenizer.untrained().words
    units = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            w = words(line)
            if w:
                units += len(w) + 1
    return units


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _pretrain(label: str, out: Path, *args: str) -> dict:
    _say(f"{label} ...")
    started = time.perf_counter()
    _nlpft("pretrain", "--out", str(out), "--overwrite", "--quiet", *args)  # --work may hold an earlier run
    wall = time.perf_counter() - started
    m = _metrics(out)
    return {"label": label, "wall_s": wall, "steps": m["steps"], "parameters": m["parameters"],
            "vocab_size": m["vocab_size"], "block_size": m["block_size"],
            "train_tokens": m["steps"] * int(_flag(args, "--batch-size", 32)) * m["block_size"],
            "train_tokens_per_s": m["train_tokens_per_s"], "peak_rss_mib": m["peak_rss_bytes"] / 2**20,
            "valid_loss": m["valid"]["loss"], "valid_ppl": m["valid"]["perplexity"],
            "test_loss": m["test"]["loss"], "test_ppl": m["test"]["perplexity"],
            "valid_loss_before": (m.get("valid_before") or {}).get("loss"), "objective": m["objective"]}


def _flag(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def _eval(model: str, corpus: Path, *extra: str) -> dict:
    result = json.loads(_nlpft("lm", "eval", "--model", model, "--corpus", str(corpus), "--json", *extra))
    result["model"] = Path(model).name  # results keep no machine paths
    return result


# -- parts ---------------------------------------------------------------------------------
def part_gpt_austen(work: Path, steps: int, rnn_epochs: int) -> dict:
    austen = _find_corpus("austen.txt")
    train, test = split_text(austen, work / "text")
    gpt = _pretrain(f"tiny GPT-2 on austen, {steps} steps", work / "gpt-austen", "--arch", "gpt2", "--size", "tiny",
                    "--corpus", str(train), "--max-steps", str(steps), "--eval-every", str(max(steps // 4, 1)),
                    "--checkpoint-every", str(steps), "--seed", "1")
    _say(f"RNN LM on austen, {rnn_epochs} epochs ...")
    started = time.perf_counter()
    _nlpft("lm", "train", "--corpus", str(train), "--out", str(work / "rnn-austen"), "--quiet", "--seed", "1",
           "--epochs", str(rnn_epochs))
    rnn_wall = time.perf_counter() - started
    rnn_m = _metrics(work / "rnn-austen")
    units = word_units(test)
    gpt_eval = _eval(str(work / "gpt-austen"), test, "--block-size", "128")
    rnn_eval = _eval(str(work / "rnn-austen"), test)
    # total nats over the test text, spread over its word units
    gpt_per_word = math.exp(gpt_eval["loss"] * gpt_eval["tokens"] / units)
    rnn_per_word = math.exp(rnn_eval["loss"] * rnn_eval["tokens"] / units)
    samples = []
    for prompt in ("It is a truth universally acknowledged", "Mr. Darcy", "She"):
        text = _nlpft("lm", "generate", "--model", str(work / "gpt-austen"), "--prompt", prompt,
                      "--max-tokens", "40", "--temperature", "0.8", "--top-k", "50", "--seed", "1")
        samples.append(text.strip())
    return {
        "gpt": {**gpt, "test_file_ppl_per_token": gpt_eval["perplexity"], "test_file_tokens": gpt_eval["tokens"],
                "test_file_ppl_per_word": gpt_per_word},
        "rnn": {"wall_s": rnn_wall, "epochs": rnn_m["epochs_completed"], "steps": rnn_m["steps"],
                "parameters": rnn_m["parameters"], "train_tokens_per_s": rnn_m["train_tokens_per_s"],
                "peak_rss_mib": rnn_m["peak_rss_bytes"] / 2**20, "test_file_ppl_per_token": rnn_eval["perplexity"],
                "test_file_tokens": rnn_eval["tokens"], "oov_rate": rnn_eval["oov_rate"],
                "test_file_ppl_per_word": rnn_per_word},
        "test_file_word_units": units,
        "samples": samples,
    }


def part_austen_kjv(work: Path, steps: int) -> dict:
    corpora = [str(_find_corpus("austen.txt")), str(_find_corpus("kjv.txt"))]
    common = ["--size", "tiny", "--corpus", *corpora, "--max-steps", str(steps), "--eval-every", str(steps),
              "--checkpoint-every", str(steps), "--seed", "1"]
    return {"gpt2": _pretrain(f"tiny GPT-2 on austen+kjv, {steps} steps", work / "gpt-ak", "--arch", "gpt2", *common),
            "bert": _pretrain(f"tiny BERT on austen+kjv, {steps} steps", work / "bert-ak", "--arch", "bert", *common)}


def part_overhead(work: Path, steps: int, repeats: int) -> dict:
    austen = _find_corpus("austen.txt")
    tokenizer_run = work / "gpt-tokenizer"
    if not (tokenizer_run / "tokenizer.json").is_file():
        _nlpft("pretrain", "--arch", "gpt2", "--corpus", str(austen), "--out", str(tokenizer_run), "--quiet",
               "--max-steps", "1", "--max-eval-blocks", "1")
    nlpft_rates, plain_rates = [], []
    for rep in range(repeats):
        for which in ("nlpft", "plain"):
            _say(f"overhead repeat {rep + 1}/{repeats}: {which}")
            if which == "nlpft":
                out = work / f"overhead-{rep}"
                _nlpft("pretrain", "--arch", "gpt2", "--size", "tiny", "--tokenizer", str(tokenizer_run),
                       "--corpus", str(austen), "--out", str(out), "--overwrite", "--quiet", "--max-steps", str(steps),
                       "--eval-every", str(10 * steps), "--checkpoint-every", str(10 * steps),
                       "--max-eval-blocks", "1", "--warmup", "0.05")
                nlpft_rates.append(_metrics(out)["train_tokens_per_s"])
            else:
                line = _run([sys.executable, str(HERE / "plain_trainer.py"), "--tokenizer", str(tokenizer_run),
                             "--text", str(austen), "--steps", str(steps)])
                plain_rates.append(json.loads(line.strip().splitlines()[-1])["tokens_per_s"])
    ratios = [n / p for n, p in zip(nlpft_rates, plain_rates, strict=True)]
    return {"steps": steps, "repeats": repeats, "nlpft_tokens_per_s": nlpft_rates, "plain_tokens_per_s": plain_rates,
            "ratio_of_medians": statistics.median(nlpft_rates) / statistics.median(plain_rates),
            "per_repeat_ratios": ratios}


def part_dapt(work: Path, head_steps: int, dapt_steps: int) -> dict:
    from gensim.test.utils import datapath

    kjv_train, kjv_test = split_text(_find_corpus("kjv.txt"), work / "text")
    common = ["--batch-size", "16", "--block-size", "128", "--precision", "bf16", "--seed", "1"]
    head = _pretrain(f"MiniLM: fit the MLM head on Lee news, encoder frozen, {head_steps} steps",
                     work / "minilm-head", "--from", "minilm", "--freeze-base", "--corpus", datapath("lee_background.cor"),
                     "--max-steps", str(head_steps), "--eval-every", str(head_steps), "--checkpoint-every",
                     str(head_steps), "--lr", "1e-3", *common)
    before = _eval(str(work / "minilm-head"), kjv_test, "--block-size", "128", "--batch-size", "16")
    dapt = _pretrain(f"MiniLM: continued pretraining on kjv, {dapt_steps} steps", work / "minilm-kjv",
                     "--from", str(work / "minilm-head"), "--corpus", str(kjv_train), "--max-steps", str(dapt_steps),
                     "--eval-every", str(dapt_steps), "--checkpoint-every", str(dapt_steps), "--lr", "1e-4", *common)
    after = _eval(str(work / "minilm-kjv"), kjv_test, "--block-size", "128", "--batch-size", "16")
    return {"head": head, "dapt": dapt, "kjv_test_before": before, "kjv_test_after": after}


# -- report ---------------------------------------------------------------------------------
def _md(results: dict) -> str:
    out = ["# nlpft pretrain benchmark", "", f"{results['machine']}", ""]
    if "gpt-austen" in results:
        r = results["gpt-austen"]
        n = r["rnn"]
        out += ["## Tiny GPT-2 vs RNN LM on Jane Austen (same held-out test text)", "",
                "| model | params | wall (whole command) | train tokens/s | peak RSS | valid ppl (own tokens) "
                "| test ppl (own tokens) | test ppl per word |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for key in ("gpt", "gpt_bf16"):
            if key in r:
                g = r[key]
                out.append(f"| GPT-2 tiny {g.get('precision', 'fp32')}, {g['steps']} steps, BPE {g['vocab_size']:,} "
                           f"| {g['parameters']:,} | {g['wall_s']:.0f} s | {g['train_tokens_per_s']:,.0f} "
                           f"| {g['peak_rss_mib']:.0f} MiB | {g['valid_ppl']:.1f} | {g['test_file_ppl_per_token']:.1f} "
                           f"| {g['test_file_ppl_per_word']:.1f} |")
        out += [f"| RNN LM (defaults), {n['epochs']} epochs, words (OOV {n['oov_rate']:.1%}) | {n['parameters']:,} "
                f"| {n['wall_s']:.0f} s{'*' if n.get('note') else ''} | {n['train_tokens_per_s']:,.0f}"
                f"{'*' if n.get('note') else ''} | {n['peak_rss_mib']:.0f} MiB | | {n['test_file_ppl_per_token']:.1f} "
                f"| {n['test_file_ppl_per_word']:.1f} |", "",
                f"Per word = exp(total test nats / {r['test_file_word_units']:,} words + line ends): the RNN LM's "
                "unit, so both columns compare; the RNN LM's figure is flattered by [UNK] (rare words share one id)."]
        if n.get("note"):
            out.append(f"\\* {n['note']}.")
        out += ["", "Samples from the fp32 model (temperature 0.8, top-k 50, seed 1; / marks a line break):", ""]
        out += [f"> {s.replace(chr(10), ' / ')}" for s in r["samples"]]
        out.append("")
    if "austen+kjv" in results:
        out += ["## Tiny models on austen + kjv, same token budget", "",
                "| model | params | tokens | wall | tokens/s | peak RSS | valid loss before → after | valid ppl |",
                "|---|---:|---:|---:|---:|---:|---|---:|"]
        for row in results["austen+kjv"].values():
            out.append(f"| {row['label']} ({row['objective'].upper()}) | {row['parameters']:,} | {row['train_tokens']:,} "
                       f"| {row['wall_s']:.0f} s | {row['train_tokens_per_s']:,.0f} | {row['peak_rss_mib']:.0f} MiB "
                       f"| {row['valid_loss_before']:.3f} → {row['valid_loss']:.3f} | {row['valid_ppl']:.1f} |")
        out.append("")
    if "overhead" in results:
        r = results["overhead"]
        out += ["## Wrapper overhead: nlpft pretrain vs the same Trainer by hand", "",
                f"{r['steps']} steps, {r['repeats']} interleaved repeats, tokens/s inside `Trainer.train()`:", "",
                f"- nlpft: {', '.join(f'{x:,.0f}' for x in r['nlpft_tokens_per_s'])}",
                f"- plain transformers: {', '.join(f'{x:,.0f}' for x in r['plain_tokens_per_s'])}",
                f"- ratio of medians (nlpft / plain): **{r['ratio_of_medians']:.3f}**; per repeat: "
                f"{', '.join(f'{x:.3f}' for x in r['per_repeat_ratios'])}", ""]
    if "dapt" in results:
        r = results["dapt"]
        out += ["## MiniLM continued pretraining on kjv (MLM loss on the same fixed masks of kjv test text)", "",
                "| model | kjv test MLM loss | perplexity |", "|---|---:|---:|",
                f"| MiniLM + head fitted on Lee news (before) | {r['kjv_test_before']['loss']:.3f} "
                f"| {r['kjv_test_before']['perplexity']:.1f} |",
                f"| after {r['dapt']['steps']} steps on kjv | {r['kjv_test_after']['loss']:.3f} "
                f"| {r['kjv_test_after']['perplexity']:.1f} |", "",
                f"Head fitting: {r['head']['steps']} steps, {r['head']['wall_s']:.0f} s; continued pretraining: "
                f"{r['dapt']['wall_s']:.0f} s, {r['dapt']['train_tokens_per_s']:,.0f} tokens/s (bf16), peak RSS "
                f"{r['dapt']['peak_rss_mib']:.0f} MiB.", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--gpt-steps", type=int, default=900, help="gpt-austen steps (default: %(default)s)")
    ap.add_argument("--rnn-epochs", type=int, default=6, help="default: %(default)s")
    ap.add_argument("--ak-steps", type=int, default=300, help="austen+kjv steps per model (default: %(default)s)")
    ap.add_argument("--overhead-steps", type=int, default=60, help="default: %(default)s")
    ap.add_argument("--repeats", type=int, default=3, help="overhead repeats (default: %(default)s)")
    ap.add_argument("--head-steps", type=int, default=100, help="default: %(default)s")
    ap.add_argument("--dapt-steps", type=int, default=150, help="default: %(default)s")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, default=None, help="keep the trained models here (default: a temp dir)")
    args = ap.parse_args()


    results = {"machine": harness.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if "gpt-austen" in args.parts:
            results["gpt-austen"] = part_gpt_austen(work, args.gpt_steps, args.rnn_epochs)
        if "austen+kjv" in args.parts:
            results["austen+kjv"] = part_austen_kjv(work, args.ak_steps)
        if "overhead" in args.parts:
            results["overhead"] = part_overhead(work, args.overhead_steps, args.repeats)
        if "dapt" in args.parts:
            results["dapt"] = part_dapt(work, args.head_steps, args.dapt_steps)
        results["total_wall_s"] = time.perf_counter() - started
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = _md(results)
    (args.results / "results.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
