"""`nlpft export --format onnx`: a fine-tuned transformer directory copied to --out with
its ONNX export beside the safetensors weights, kept only when the export agrees with the
original (`nlpft.finetune.onnx_export`).

The copy keeps everything predict, evaluate and serve read (tokenizer, config, label
files, finetune.json, the weights for `--runtime torch`) plus `model.onnx` and
`parity.json`; finetune.json gains an "onnx" object (file, sha256, inputs, opset,
quantization, exporter, parity) that `load_for_inference` reads to pick and verify the
export. The comparison runs the export through that very loader, from the directory about
to be published.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.onnx_export import MODEL_FILE, PARITY_FILE
from nlpft.finetune.options import ExportOptions
from nlpft.runners.output import MARKER_FILE, RunOutput, write_json

#: not copied from the model directory: the new output's own marker, an earlier export's files
_NOT_COPIED = (MARKER_FILE, MODEL_FILE, PARITY_FILE)


def run_export(opts: ExportOptions) -> dict:
    """{"out", "parity" (a Parity), "bytes" (of model.onnx)}; raises UserInputError (exit 2)
    for a model it cannot export and for an export below the agreement threshold."""
    from nlpft.finetune import onnx_export as ox
    from nlpft.finetune.inference import META_FILE, load_for_inference
    from nlpft.finetune.onnx_runtime import require_onnx_extra

    opts.validate()
    require_onnx_extra("nlpft export", modules=("onnx", "onnxruntime", "onnxscript"))
    original = load_for_inference(opts.model, runtime="torch", precision="fp32", threads=opts.threads)
    ox.check_exportable(original)
    rows, source = ox.parity_rows(original, opts.check)
    output = RunOutput(opts.out, overwrite=opts.overwrite, command="export", inputs=[opts.model, opts.check])
    work = output.open()
    with output.cleaned_up_on_error():
        _copy_model_files(original.model_dir, work)
        original_scores, _ = original.score(rows)  # loads the torch model
        graph = work / MODEL_FILE
        example = ox.example_batch(original.task, original.prepared, rows)
        if opts.quantize == "int8":
            fp32 = work / "model.fp32.onnx"
            inputs = ox.export_graph(original.prepared.model, example, fp32, opts.opset)
            tried = []  # (agreement, layout) of the layouts whose parity was below the bar
            for layout in ox.INT8_LAYOUTS:  # the fastest first; the next only when it agrees less
                ox.quantize_int8(fp32, graph, layout)
                meta, parity = _exported_parity(opts, original, original_scores, rows, source, work, inputs, layout)
                if parity.agreement >= ox.ALL_MATMULS_AGREEMENT:
                    break
                tried.append((parity.agreement, layout))
                if layout != ox.INT8_LAYOUTS[-1]:
                    print(f"int8, {layout}: {parity.line()}; trying {ox.INT8_LAYOUTS[len(tried)]}", file=sys.stderr)
            else:
                best = max(tried, key=lambda item: item[0])[1]  # the first of equals: the faster
                if best != layout:
                    ox.quantize_int8(fp32, graph, best)
                    meta, parity = _exported_parity(opts, original, original_scores, rows, source, work, inputs,
                                                    best)
            fp32.unlink()
        else:
            inputs = ox.export_graph(original.prepared.model, example, graph, opts.opset)
            meta, parity = _exported_parity(opts, original, original_scores, rows, source, work, inputs, None)
        if not parity.accepted:
            raise UserInputError(f"export refused, nothing written: {parity.line()}, below the "
                                 f"{parity.threshold:.0%} agreement an export must reach"
                                 + ("; export without --quantize" if opts.quantize != "none" else ""))
        meta["onnx"]["parity"] = parity.to_json()
        write_json(work / META_FILE, meta)
        write_json(work / PARITY_FILE, parity.to_json())
        output.publish()
    return {"out": output.final, "parity": parity, "bytes": meta["onnx"]["bytes"]}


def _exported_parity(opts: ExportOptions, original, original_scores, rows: list, source: str, work: Path,
                     inputs: list[str], layout: str | None):
    """(finetune.json's content with its "onnx" object, Parity) of the graph now in
    work/model.onnx, scored through the loader predict uses."""
    from nlpft.finetune import onnx_export as ox
    from nlpft.finetune.inference import META_FILE, load_for_inference
    from nlpft.finetune.onnx_runtime import sha256_of

    data = (work / MODEL_FILE).read_bytes()
    meta = dict(original.meta)
    meta["onnx"] = _record(opts, inputs, sha256_of(data), len(data), layout)
    write_json(work / META_FILE, meta)
    exported = load_for_inference(work, runtime="onnx", threads=opts.threads)
    exported_scores, _ = exported.score(rows)
    return meta, ox.compare(original.task, original_scores, exported_scores, len(rows), source,
                            meta["onnx"]["quantization"], int8_layout=layout)


def _copy_model_files(source: Path, work: Path) -> None:
    """Everything of the model directory except nlpft's marker (the new output has its own)
    and the files an export writes."""
    for item in sorted(Path(source).iterdir()):
        if item.name in _NOT_COPIED:
            continue
        if item.is_dir():
            shutil.copytree(item, work / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, work / item.name)


def _record(opts: ExportOptions, inputs: list[str], sha256: str, size: int, layout: str | None) -> dict:
    """finetune.json's "onnx" object (the parity is added once measured)."""
    import onnxruntime
    import onnxscript
    import torch

    quantized = opts.quantize == "int8"
    return {"file": MODEL_FILE, "sha256": sha256, "bytes": size, "inputs": inputs, "outputs": ["logits"],
            "opset": opts.opset, "quantization": "int8" if quantized else None, "int8_layout": layout,
            "exporter": f"torch.onnx.export (dynamo), torch {torch.__version__}; onnxscript {onnxscript.__version__} "
                        "ONNX Runtime fusions (MultiHeadAttention, BiasGelu)",
            "quantizer": f"onnxruntime {onnxruntime.__version__} quantize_dynamic (QInt8 weights)" if quantized else None,
            "source": str(opts.model)}


def export_summary(result: dict) -> str:
    """The line after the parity line: what was written where."""
    return f"{MODEL_FILE} ({result['bytes'] / 1024**2:.1f} MB) and the model's files -> {result['out']}"

