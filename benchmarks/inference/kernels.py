"""Where the time of an exported model goes: the matrix-product rate of each runtime and
precision on this CPU, and the share of an ONNX graph's time per operator kind.

The inference table compares whole models; these figures explain its ratios. A row can be
no faster than its matrix products allow, and quantization speeds up only the operators
it quantizes: dynamic int8 turns the weight MatMuls into MatMulInteger relatives, while
attention (its products are of two activations), GELU and layer norms stay fp32.

    python benchmarks/inference/kernels.py --graph DIR/model.onnx --texts texts.jsonl --tokenizer DIR

GEMM rates: one product of MiniLM's feed-forward shape (a batch of 32 texts of 256 tokens
against a 384 x 1536 weight), warmed up, the median of --repeats timed calls, in GFLOP/s
(int8: billions of multiply-adds x 2 per second, so the figures compare):
  onnx-fp32   ONNX Runtime MatMul, fp32
  onnx-int8   ONNX Runtime MatMulInteger, uint8 activations x int8 weights (what dynamic
              quantization runs)
  torch-fp32  torch.matmul, fp32
  torch-bf16  torch.matmul, bf16 (only where the CPU does bf16 natively)
Operator shares: ONNX Runtime's own profile of --graph (the session options `nlpft
predict` uses) over one batch of 32 of the texts, after a warm-up call.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # nlpft from this checkout

import numpy as np  # noqa: E402

from nlpft.finetune.onnx_runtime import LOGITS, build_session  # noqa: E402

ROWS, INNER, COLUMNS = 32 * 256, 384, 1536  # tokens of one batch x MiniLM's hidden x its feed-forward width


def timed(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def onnx_gemm_rate(op: str, threads: int, repeats: int) -> float:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if op == "MatMulInteger":
        a = rng.integers(0, 256, (ROWS, INNER)).astype(np.uint8)
        weight = rng.integers(-127, 128, (INNER, COLUMNS)).astype(np.int8)
        in_type, out_type = TensorProto.UINT8, TensorProto.INT32
    else:
        a = rng.standard_normal((ROWS, INNER), dtype=np.float32)
        weight = rng.standard_normal((INNER, COLUMNS), dtype=np.float32)
        in_type = out_type = TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node(op, ["a", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("a", in_type, [ROWS, INNER])],
                              [helper.make_tensor_value_info("y", out_type, [ROWS, COLUMNS])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = build_session(model.SerializeToString(), threads)
    seconds = timed(lambda: session.run(None, {"a": a}), repeats)
    return 2 * ROWS * INNER * COLUMNS / seconds / 1e9


def torch_gemm_rate(dtype, repeats: int) -> float:
    import torch

    a = torch.randn(ROWS, INNER, dtype=dtype)
    weight = torch.randn(INNER, COLUMNS, dtype=dtype)
    with torch.inference_mode():
        seconds = timed(lambda: a @ weight, repeats)
    return 2 * ROWS * INNER * COLUMNS / seconds / 1e9


def operator_shares(graph: Path, texts: list[str], tokenizer_dir: Path, threads: int) -> dict[str, float]:
    """Share of the graph's kernel time per operator kind, over one batch of up to 32 texts."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    encoded = tokenizer.encode_batch(texts[:32])
    width = max(len(e.ids) for e in encoded)
    ids = np.zeros((len(encoded), width), np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encoded):  # right padding, as the task's collator pads
        ids[row, :len(e.ids)] = e.ids
        mask[row, :len(e.ids)] = 1
    with tempfile.TemporaryDirectory() as scratch:
        session = build_session(graph.read_bytes(), threads, profile_prefix=str(Path(scratch) / "profile"))
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {node.name: feed[node.name] for node in session.get_inputs()}
        session.run([LOGITS], feed)  # warm-up (first-call allocations)
        session.run([LOGITS], feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_kind: collections.Counter = collections.Counter()
    half = len(calls) // 2  # the second run's nodes
    for event in calls[half:]:
        per_kind[event["args"]["op_name"]] += event["dur"]
    total = sum(per_kind.values())
    return {kind: time_us / total for kind, time_us in per_kind.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", help="an exported model.onnx to profile")
    ap.add_argument("--tokenizer", help="the export's directory (its tokenizer.json)")
    ap.add_argument("--texts", help="texts.jsonl for the profile")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    from nlpft.training.precision import bf16_is_native

    threads = torch.get_num_threads()
    rates = {"onnx-fp32": onnx_gemm_rate("MatMul", threads, args.repeats),
             "onnx-int8": onnx_gemm_rate("MatMulInteger", threads, args.repeats),
             "torch-fp32": torch_gemm_rate(torch.float32, args.repeats)}
    if bf16_is_native():
        rates["torch-bf16"] = torch_gemm_rate(torch.bfloat16, args.repeats)
    result = {"threads": threads, "gemm_shape": [ROWS, INNER, COLUMNS], "gemm_gflops": rates}
    if args.graph:
        with open(args.texts, encoding="utf-8") as fh:
            texts = [json.loads(line) for line in fh]
        result["operator_shares"] = operator_shares(Path(args.graph), texts, Path(args.tokenizer), threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
