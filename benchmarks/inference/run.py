"""CPU inference of a fine-tuned MiniLM classifier: the stock pipeline against `nlpft
predict` (torch fp32, torch bf16, ONNX fp32, ONNX int8), and `nlpft serve` under load.

Data: BBC News (../shared/corpora/bbc_news.csv), the seeded stratified 80/10/10 split of
benchmarks/finetune (seed 13); the classifier is `nlpft finetune --model minilm` on its
train/valid rows (--long-text truncate --max-length 256 --epochs 2), or --model DIR.
Every row reads the 222 test articles cut at the same 256 tokens, so all five compute the
same thing and their accuracies are comparable.

Rows, each a child process (its own threads and allocations), in interleaved repeats
(a b c d e, a b c d e, ...; the median is reported):

  pipeline      transformers' `pipeline("text-classification", batch_size=32)` on the
                fine-tuned directory (plain_pipeline.py, no nlpft import), fp32
  torch-fp32    nlpft's scoring path (measure_nlpft.py), --runtime torch --precision fp32
  torch-bf16    the same in bf16 autocast, only where the CPU does bf16 natively
  onnx-fp32     `nlpft export --format onnx`, --runtime onnx
  onnx-int8     `nlpft export --format onnx --quantize int8`, --runtime onnx

For each: examples/s over the whole test set in batches of 32 (the model loaded and
warmed up first, outside the clock), p50/p99 latency of single-text calls over the first
--latency-texts texts, and test accuracy against the gold labels.

Load test, in the same run: `nlpft serve` with the fastest nlpft row of the table (torch
bf16 on a CPU that does bf16 natively, else whichever measured fastest) started on a free
loopback port, --clients concurrent clients (threads with their own HTTP connection)
sending --requests single-text POST /predict requests in all, with micro-batching (the
server's defaults) and without (--max-batch 1: one request per model call), for two kinds
of request: whole articles (cut at 256 tokens) and each article's title and first
sentence (a short request, as most served texts are); the server is stopped with SIGTERM
at the end and its exit code recorded. Throughput, p50/p95/p99 latency and
errors (any non-200 answer or failed request). Clients and server share the machine's
cores, as they would on one host. Each load test stops by itself after --load-timeout s.

    python benchmarks/inference/run.py                  # trains the classifier first: ~15-25 min on 2 cores
    python benchmarks/inference/run.py --model runs/bbc --work /tmp/inf   # a classifier trained on the same split
    python benchmarks/inference/run.py --smoke --results /tmp/inf-smoke    # tiny counts: checks the wiring

Then, in the same run, what bounds those rows (kernels.py): each runtime's matrix-product
rate at each precision on this CPU, and the int8 graph's time per operator.

Writes results.json and results.md under --results (default: benchmarks/inference/results).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import harness  # noqa: E402

_say = functools.partial(harness.say, "inference")
MAX_LENGTH = 256


def train_classifier(split: dict, out: Path, epochs: int) -> Path:
    if (out / "finetune.json").is_file():
        _say(f"classifier: {out} (already trained)")
        return out
    _say(f"training the MiniLM classifier into {out} ({epochs} epochs)")
    harness.nlpft("finetune", "--model", "minilm", "--train", str(split["train"]), "--valid", str(split["valid"]),
                  "--test", str(split["test"]), "--long-text", "truncate", "--max-length", str(MAX_LENGTH),
                  "--epochs", str(epochs), "--out", str(out), "--quiet")
    return out


def export(model: Path, out: Path, quantize: str | None) -> dict:
    """The export's parity figures; exports only when `out` has no finished export of `model`."""
    if not (out / "parity.json").is_file():
        _say(f"exporting {model} to {out}" + (f" ({quantize})" if quantize else ""))
        harness.nlpft("export", "--model", str(model), "--format", "onnx", "--out", str(out), "--overwrite",
                      *(["--quantize", quantize] if quantize else []))
    return json.loads((out / "parity.json").read_text())


def test_texts(test_csv: Path) -> tuple[list[str], list[str]]:
    with open(test_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def measure(variant: dict, texts_file: Path, latency_texts: int) -> dict:
    if variant["script"] == "pipeline":
        cmd = [sys.executable, str(HERE / "plain_pipeline.py"), "--model", str(variant["model"]),
               "--max-length", str(MAX_LENGTH)]
    else:
        cmd = [sys.executable, str(HERE / "measure_nlpft.py"), "--model", str(variant["model"]),
               "--runtime", variant["runtime"], "--precision", variant["precision"]]
    cmd += ["--texts", str(texts_file), "--latency-texts", str(latency_texts)]
    return json.loads(harness.run(cmd).strip().splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- the server under load ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, extra: list[str], log: Path, ready_timeout: float = 300):
    log_fh = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed by stop_server)
    proc = subprocess.Popen([sys.executable, "-m", "nlpft", "serve", "--model", str(model), "--port", str(port),
                             *extra], stdout=log_fh, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_fh.close()
            sys.exit(f"nlpft serve exited with {proc.returncode} before it was ready:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, log_fh
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # polling the server's own readiness answer
    proc.kill()
    sys.exit(f"nlpft serve was not ready after {ready_timeout:.0f} s; log: {log}")


def stop_server(proc, log_fh) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    log_fh.close()
    return code


def load_test(port: int, texts: list[str], clients: int, requests: int, timeout: float) -> dict:
    """`requests` single-text POST /predict calls from `clients` threads, each on its own
    keep-alive connection; stops early at `timeout` seconds."""
    import httpx

    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + timeout

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests:
                        return
                    index = issued[0]
                    issued[0] += 1
                started = time.perf_counter()
                try:
                    answer = http.post("/predict", json={"texts": [texts[index % len(texts)]]})
                    ok = answer.status_code == 200 and len(answer.json()["predictions"]) == 1
                    failure = None if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    (errors.append(failure) if failure else latencies.append(elapsed))

    workers = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies) + len(errors), "ok": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "wall_s": wall, "requests_per_s": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p95_ms": percentile(latencies, 95) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None}


# -- the report --------------------------------------------------------------------------------
def summarise(rows: dict, gold: list[str]) -> dict:
    summary = {}
    for name, runs in rows.items():
        throughputs = [r["texts"] / r["batch_s"] for r in runs]
        latencies = [ms for r in runs for ms in r["latencies_ms"]]
        labels = runs[0]["labels"]
        summary[name] = {"examples_per_s": statistics.median(throughputs), "examples_per_s_runs": throughputs,
                         "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                         "accuracy": sum(p == g for p, g in zip(labels, gold, strict=True)) / len(gold),
                         "same_labels_every_repeat": all(r["labels"] == labels for r in runs),
                         "threads": runs[0]["threads"],
                         "precision": runs[0].get("precision", "fp32"), "runtime": runs[0].get("runtime", "torch")}
    base = summary["pipeline"]["examples_per_s"]
    for row in summary.values():
        row["speedup_vs_pipeline"] = row["examples_per_s"] / base
    return summary


def kernels_report(kernels: dict) -> list[str]:
    """What bounds the rows: each runtime's matrix-product rate, and where the int8 graph's
    time goes (kernels.py)."""
    rows, inner, columns = kernels["gemm_shape"]
    rates = kernels["gemm_gflops"]
    lines = [f"Matrix products on this CPU, same run ({rows} x {inner} by {inner} x {columns}, MiniLM's "
             f"feed-forward on a batch of 32 x 256 tokens, {kernels['threads']} thread(s)); int8 counts "
             "multiply-adds as fp32 does:", "",
             "| kernel | G(FL)OP/s | x ONNX fp32 |", "|---|---|---|"]
    names = {"onnx-fp32": "ONNX Runtime MatMul, fp32", "onnx-int8": "ONNX Runtime MatMulInteger, u8 x s8",
             "torch-fp32": "torch matmul, fp32", "torch-bf16": "torch matmul, bf16"}
    for name, rate in rates.items():
        lines.append(f"| {names[name]} | {rate:.0f} | {rate / rates['onnx-fp32']:.2f}× |")
    shares = kernels.get("operator_shares") or {}
    if shares:
        quantized = sum(share for kind, share in shares.items()
                        if kind in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger",
                                    "DynamicQuantizeLinear", "DequantizeLinear"))
        top = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in list(shares.items())[:6])
        lines += ["", f"The int8 graph's time per operator (ONNX Runtime's profile, one batch of 32 test texts): {top}. "
                      f"Its quantized matrix products take {100 * quantized:.0f}% of it; the rest (attention, whose "
                      "products are of two activations, GELU, layer norms) runs in fp32 as in the fp32 export."]
    return lines


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", "",
             f"{results['test_texts']} BBC News test articles, cut at {MAX_LENGTH} tokens; classifier: "
             f"`nlpft finetune --model minilm` ({results['classifier_accuracy']:.4f} test accuracy at training); "
             f"median of {results['repeats']} interleaved repeats; latency: single-text calls over "
             f"{results['latency_texts']} texts.", "",
             "| runtime | examples/s | × pipeline | p50 ms | p99 ms | accuracy |", "|---|---|---|---|---|---|"]
    labels = {"pipeline": "stock `pipeline`, batch 32, fp32", "torch-fp32": "nlpft predict, torch fp32",
              "torch-bf16": "nlpft predict, torch bf16", "onnx-fp32": "nlpft predict, ONNX fp32",
              "onnx-int8": "nlpft predict, ONNX int8"}
    for name, row in results["rows"].items():
        lines.append(f"| {labels[name]} | {row['examples_per_s']:.1f} | {row['speedup_vs_pipeline']:.2f}× | "
                     f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['accuracy']:.4f} |")
    if "torch-bf16" not in results["rows"]:
        lines += ["", "torch bf16: not measured, this CPU has no native bf16 (it would be emulated, slower)."]
    lines += ["", "Export parity (the export's own report, on the model's test texts):"]
    for name, parity in results["parity"].items():
        lines.append(f"- {name}: {parity.get('line') or json.dumps(parity)}")
    if results.get("kernels"):
        lines += ["", *kernels_report(results["kernels"])]
    if results.get("load"):
        lines += ["", f"`nlpft serve` ({results['served']}, the fastest row above) under {results['clients']} "
                      f"concurrent clients, {results['requests']} single-text requests per test, on loopback; "
                      "clients and server share the machine's cores:", "",
                  "| texts | server | requests | req/s | p50 ms | p95 ms | p99 ms | errors | exit code |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for load in results["load"].values():
            lines.append(f"| {load['texts']} | {load['mode']} | {load['requests']} | {load['requests_per_s']:.1f} | "
                         f"{load['p50_ms']:.1f} | {load['p95_ms']:.1f} | {load['p99_ms']:.1f} | {load['errors']} | "
                         f"{load['exit_code']} |")
        for kind in dict.fromkeys(load["texts"] for load in results["load"].values()):
            batched = results["load"].get(f"{kind}, micro-batching")
            alone = results["load"].get(f"{kind}, one request per call")
            if batched and alone:
                lines.append(f"\nMicro-batching, {kind}: {batched['requests_per_s'] / alone['requests_per_s']:.2f}× "
                             "the throughput of one request per model call.")
    lines += ["", f"Command: `{results['command']}`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an nlpft finetune output trained on this benchmark's split (default: train one)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", default=None, help="keeps the split, model and exports (default: a temp folder)")
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-texts", type=int, default=100)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--skip-load-test", action="store_true")
    ap.add_argument("--stem", default="results", help="the results files' name: STEM.md and STEM.json")
    ap.add_argument("--smoke", action="store_true", help="one repeat, 10 latency texts, 100 requests")
    args = ap.parse_args()
    if args.smoke:
        args.repeats, args.latency_texts, args.requests = 1, 10, 100

    import tempfile

    from nlpft.training.precision import bf16_is_native

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="nlpft-inference-"))
    split = harness.write_split(harness.shared_file("bbc_news.csv"), work / "split")
    model = Path(args.model) if args.model else train_classifier(split, work / "bbc-minilm", args.epochs)
    parity = {"onnx-fp32": export(model, work / "bbc-onnx-fp32", None),
              "onnx-int8": export(model, work / "bbc-onnx-int8", "int8")}
    texts, gold = test_texts(split["test"])
    texts_file = work / "test_texts.jsonl"
    texts_file.write_text("".join(json.dumps(t) + "\n" for t in texts), encoding="utf-8")

    variants = {"pipeline": {"script": "pipeline", "model": model},
                "torch-fp32": {"script": "nlpft", "model": model, "runtime": "torch", "precision": "fp32"}}
    if bf16_is_native():
        variants["torch-bf16"] = {"script": "nlpft", "model": model, "runtime": "torch", "precision": "bf16"}
    variants["onnx-fp32"] = {"script": "nlpft", "model": work / "bbc-onnx-fp32", "runtime": "onnx", "precision": "auto"}
    variants["onnx-int8"] = {"script": "nlpft", "model": work / "bbc-onnx-int8", "runtime": "onnx", "precision": "auto"}
    runs: dict[str, list] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, variant in variants.items():
            _say(f"repeat {repeat + 1}/{args.repeats}: {name}")
            runs[name].append(measure(variant, texts_file, args.latency_texts))
            _say(f"  {texts_file.name}: {runs[name][-1]['texts'] / runs[name][-1]['batch_s']:.1f} examples/s")

    metrics = json.loads((model / "metrics.json").read_text())
    results = {"machine": harness.machine(), "test_texts": len(texts), "repeats": args.repeats,
               "latency_texts": args.latency_texts, "classifier": model.name,  # its folder's name: no path of this machine
               "classifier_accuracy": metrics.get("test", metrics).get("accuracy", float("nan")),
               "rows": summarise(runs, gold), "parity": parity, "clients": args.clients, "requests": args.requests,
               "command": harness.recorded_command("benchmarks/inference/run.py", sys.argv[1:],
                                                   folders=("--model",))}
    _say("matrix-product rates and the int8 graph's time per operator (kernels.py)")
    results["kernels"] = json.loads(harness.run([
        sys.executable, str(HERE / "kernels.py"), "--graph", str(work / "bbc-onnx-int8" / "model.onnx"),
        "--tokenizer", str(work / "bbc-onnx-int8"), "--texts", str(texts_file)]).strip().splitlines()[-1])
    if not args.skip_load_test:
        # the server runs what the table found fastest on this CPU (bf16 torch, or an ONNX export)
        fastest = max((name for name in variants if name != "pipeline"),
                      key=lambda name: results["rows"][name]["examples_per_s"])
        served = variants[fastest]
        results["served"] = fastest
        serve_options = ["--runtime", served["runtime"], "--precision", served["precision"]]
        # whole articles (cut at 256 tokens), and short requests: each article's title and first sentence
        kinds = {"articles": texts, "first sentences": [t.split(". ")[0][:300] for t in texts]}
        results["load"] = {}
        for kind, kind_texts in kinds.items():
            for mode, extra in (("micro-batching", []), ("one request per call", ["--max-batch", "1"])):
                port = free_port()
                _say(f"load test: {kind}, {mode}, {args.clients} clients, {args.requests} requests on port {port}")
                proc, log_fh = start_server(served["model"], port, serve_options + extra, work / f"serve-{port}.log")
                try:
                    load = load_test(port, kind_texts, args.clients, args.requests, args.load_timeout)
                finally:
                    load_exit = stop_server(proc, log_fh)
                results["load"][f"{kind}, {mode}"] = {**load, "texts": kind, "mode": mode, "exit_code": load_exit,
                                                      "server_options": serve_options + extra}
                _say(f"  {load['requests_per_s']:.1f} requests/s, {load['errors']} errors, exit {load_exit}")
    text = report(results)
    harness.write_results(Path(args.results), results, text, stem=args.stem)
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
