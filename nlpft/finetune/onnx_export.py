"""`nlpft export --format onnx`: a fine-tuned transformer written as an ONNX graph of its
logits, optionally int8-quantized, and compared with the original before it is kept.

Export      `torch.onnx.export(..., dynamo=True)`, the exporter maintained for transformers
            5 (optimum-onnx needs transformers < 4.58; the legacy TorchScript exporter gave
            logits 0.02 off on a batch padded otherwise than the traced one). The graph is
            `LogitsGraph`: input_ids, attention_mask (and token_type_ids for text pairs, as
            the task's collator gives them) -> logits, batch and sequence length dynamic,
            traced on a padded batch so the attention mask is part of the graph. One file
            (`model.onnx`, weights inside), so one checksum covers everything. Attention
            and GELU are then fused into ONNX Runtime's operators (`fuse_for_onnx_runtime`).
int8        ONNX Runtime's dynamic quantization (weights int8, activations quantized per
            batch), after its pre-processing (shape inference, graph optimisation): every
            MatMul, or, when that agrees with the original on under ALL_MATMULS_AGREEMENT of
            the decisions, every MatMul but the feed-forward down-projections.
Parity      the original (torch, fp32) and the export score the same texts through the same
            tokenizer and batching; the agreement of their decisions (labels, label sets,
            tags per word, or regression values within a tolerance) and the largest
            probability difference make the report, and below `MIN_AGREEMENT` the export
            is refused.

The model loads through the backbone's own loader (safetensors only, no remote code).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from nlpft.errors import UserInputError

MODEL_FILE = "model.onnx"
PARITY_FILE = "parity.json"
MIN_AGREEMENT = 0.99
#: regression: an exported value agrees within this share of the range of the original's values
REGRESSION_TOLERANCE = 0.02
ONE_FILE_LIMIT = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GiB, less room for the graph itself
EXPORTABLE = "fine-tuned transformer backbones (hf-encoder, hf-decoder)"


def check_exportable(loaded) -> None:
    """Refuse a model that is not a plain function from token ids to logits."""
    where = loaded.model_dir
    if not loaded.backbone.exports_onnx:
        name = loaded.meta["backbone"]
        runs_without_torch = name == "tfidf"
        raise UserInputError(f"nlpft export supports {EXPORTABLE}; {where} uses {name}"
                             + (", which already predicts without torch" if runs_without_torch else
                                ", whose model is not one transformer graph; predict it as it is"))
    obstacle = loaded.task.export_obstacle()
    if obstacle is not None:
        raise UserInputError(f"nlpft export supports {EXPORTABLE} without layers decoded in Python; {where} cannot "
                             f"be exported: {obstacle}. Predict it with the torch runtime")


# -- the graph --------------------------------------------------------------------------------
def logits_graph(model):
    """`model` as the function the export holds: keyword tensors in, the logits tensor out."""
    import torch

    class LogitsGraph(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra)["logits"]

    return LogitsGraph(model).eval()


def example_batch(task, prepared, rows: list) -> dict:
    """A padded batch of two items made from the longest of `rows` as the task encodes it:
    two rows and two positions at least (the exporter would fix a dimension of size one),
    the second row shorter, so its mask has padding and the graph keeps the masking."""
    dataset, _ = task.encode(prepared, rows, with_targets=False)
    longest = dict(dataset[max(range(len(dataset)), key=lambda i: len(dataset[i]["input_ids"]))])
    if len(longest["input_ids"]) < 2:  # a one-token text
        longest = {key: list(value) * 2 for key, value in longest.items()}
    shorter = {key: list(value)[:-1] for key, value in longest.items()}
    return task.collator(prepared.pad_id)([longest, shorter])


@contextlib.contextmanager
def quiet_exporter():
    """No exporter chatter (missing torchvision ops, deprecations, axis renaming notes)."""
    from nlpft.training.hf import transformers_quiet

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), transformers_quiet():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def eager_attention(model) -> None:
    """Attention as plain matrix products (transformers' "eager" implementation) instead of
    SDPA, whose exported graph adds NaN guards for fully masked rows: ONNX Runtime ran
    MiniLM's eager graph at 10.2 BBC News texts/s, the SDPA one at 8.7 (fp32, one thread),
    with the same outputs."""
    from transformers import PreTrainedModel

    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            module.set_attn_implementation("eager")


def export_graph(model, example: dict, path: Path, opset: int) -> list[str]:
    """Write `model`'s logits graph to `path` (one file); returns its input names. The
    model's attention is switched to `eager_attention` for good."""
    import torch

    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if size > ONE_FILE_LIMIT:
        raise UserInputError(f"the model's weights take {size / 1024**3:.1f} GiB, more than one ONNX file holds "
                             "(2 GiB); nlpft export writes models below that")
    eager_attention(model)
    dims = {"batch": torch.export.Dim("batch"), "seq": torch.export.Dim("seq")}
    names = list(example)
    with quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(logits_graph(model), (), kwargs=example, dynamo=True, input_names=names,
                                    output_names=["logits"], opset_version=opset, verbose=False,
                                    dynamic_shapes={name: {0: dims["batch"], 1: dims["seq"]} for name in names})
        exported = program.model_proto.SerializeToString()
        fuse_for_onnx_runtime(program.model)
        fused = program.model_proto.SerializeToString()
    path.write_bytes(fused if onnx_runtime_loads(fused) else exported)
    return names


def onnx_runtime_loads(model_bytes: bytes) -> bool:
    """Whether ONNX Runtime builds the session `nlpft predict` will run the graph in: the
    fusions' rewriting can leave a graph it rejects (GPT-2's Conv1D Gemm given a rank-3
    input); the plain export is kept then."""
    from nlpft.finetune.onnx_runtime import build_session

    try:
        build_session(model_bytes, threads=1, quiet=True)  # building the session is all it does
    except Exception:  # onnxruntime's InvalidGraph, Fail, ...
        return False
    return True


def fuse_for_onnx_runtime(model) -> dict[str, int]:
    """Rewrite the exported graph (an onnx_ir Model, in place) with ONNX Runtime's fused
    operators where onnxscript's patterns match: each layer's attention as one
    MultiHeadAttention (com.microsoft) and erf GELU after its bias as one BiasGelu. ONNX
    Runtime's own optimizer does not recognise the dynamo exporter's attention. Returns how
    many of each were fused (none on a graph the patterns miss, which stays as exported).

    Left out on purpose, measured on MiniLM/BBC News (one thread): `Attention`, which packs
    the query, key and value projections into one weight, because dynamic quantization
    leaves it fp32 (it refuses `qkv_hidden_sizes` and would drop the mask); and
    SkipLayerNormalization, whose CPU kernel took 5x the time of Add + LayerNormalization
    (`onnx_runtime.UNFUSED`). fp32 went from 12.1 to 14.6 texts/s, int8 from 15.0 to 20.7."""
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import bias_gelu, erfgelu, mha, mha_bias, sdpa, shape_optimization
    from onnxscript.rewriter.rules.common import gemm_to_matmul_add_rule

    rewrite(model, [gemm_to_matmul_add_rule])  # as onnxscript's optimize_for_ort starts
    common_passes.ShapeInferencePass()(model)  # the shapes the attention patterns check
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts = {"erf_gelu": erfgelu.fuse_erfgelu(model),
              "sdpa": sdpa.fuse_sdpa(model, apply_shape_inference=True),
              "mha": mha.fuse_mha1(model) + mha.fuse_mha2(model),
              "mha_bias": mha_bias.fuse_mha_bias(model),
              "bias_gelu": bias_gelu.fuse_bias_gelu(model)}
    optimize(model)  # inlines what a later fusion did not take up (an SDPA without MHA), drops dead nodes
    return counts


#: int8 layouts tried in order: every MatMul first (the fastest), then with the feed-forward
#: down-projections kept fp32 when the first agrees with the original on fewer decisions
INT8_LAYOUTS = ("all MatMuls", "down-projections fp32")
#: the agreement every-MatMul int8 must reach to be kept; on MiniLM fine-tuned on BBC News it
#: was 100% for one training run and 99.1% (2 of 222 labels flipped) for another
ALL_MATMULS_AGREEMENT = 0.995


def quantize_int8(source: Path, target: Path, layout: str = INT8_LAYOUTS[0]) -> None:
    """ONNX Runtime dynamic quantization of `source` into `target`: int8 weights, each batch's
    activations quantized on the fly, after ONNX Runtime's pre-processing (symbolic shape
    inference skipped: it cannot resolve the dynamic sequence length against the position
    table). `layout` (one of INT8_LAYOUTS) says whether the feed-forward down-projections
    stay fp32 (`down_projections`)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if layout not in INT8_LAYOUTS:
        raise ValueError(f"int8 layout {layout!r}: one of {', '.join(INT8_LAYOUTS)}")
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, quiet_exporter():
        prepared = Path(scratch) / "preprocessed.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        kept = down_projections(onnx.load(str(prepared))) if layout == "down-projections fp32" else []
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, nodes_to_exclude=kept)


def down_projections(model) -> list[str]:
    """Names of the MatMul nodes whose weight narrows the features (more rows than columns):
    a transformer's feed-forward down-projections. They read GELU outputs, whose long tail
    one uint8 scale per batch holds less well than the other inputs: on one MiniLM
    fine-tuned on BBC News, quantizing them too flipped 2 of 222 test labels (largest
    probability difference 0.25, accuracy 0.9685 against 0.9775); kept fp32, 1 label flipped
    (0.066), at 15 texts/s instead of 18. On another training run every MatMul in int8
    flipped none."""
    shapes = {tensor.name: list(tensor.dims) for tensor in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2
            and shapes[node.input[1]][0] > shapes[node.input[1]][1]]


# -- parity -----------------------------------------------------------------------------------
@dataclass
class Parity:
    """How the export's outputs compare with the original's on `rows` texts."""

    rows: int
    source: str  # "test texts", "texts of FILE"
    agreement: float  # share of decisions (words, for tagging) the two agree on
    agreement_of: str  # what agrees: "same label", "same tag on 312 words", ...
    largest_difference: float  # of a probability (regression: of a value)
    difference_of: str  # "probability" or "value"
    quantization: str | None
    tolerance: float | None = None  # regression: the largest difference that agrees
    int8_layout: str | None = None  # one of INT8_LAYOUTS
    threshold: float = MIN_AGREEMENT

    @property
    def accepted(self) -> bool:
        return self.agreement >= self.threshold

    def line(self) -> str:
        return (f"parity on {self.rows} {self.source}: {100 * self.agreement:.1f}% {self.agreement_of}, largest "
                f"{self.difference_of} difference {self.largest_difference:.4g} "
                f"({', '.join(filter(None, (self.quantization or 'fp32', self.int8_layout)))})")

    def to_json(self) -> dict:
        return {**asdict(self), "line": self.line()}


def compare(task, original, exported, rows: int, source: str, quantization: str | None,
            int8_layout: str | None = None) -> Parity:
    """The parity of the task's scores `exported` against `original` (same rows, same order)."""
    import numpy as np

    common = {"rows": rows, "source": source, "quantization": quantization, "int8_layout": int8_layout}
    if task.target_kind == "number":
        original, exported = np.asarray(original, dtype=np.float64), np.asarray(exported, dtype=np.float64)
        spread = float(original.max() - original.min()) if len(original) else 0.0
        tolerance = REGRESSION_TOLERANCE * spread if spread > 0 else 1e-6
        differences = np.abs(original - exported)
        return Parity(agreement=float(np.mean(differences <= tolerance)),
                      agreement_of=f"within {tolerance:.3g} ({REGRESSION_TOLERANCE:.0%} of the range of the values)",
                      largest_difference=float(differences.max()), difference_of="value", tolerance=tolerance,
                      **common)
    decided_original, decided_exported = task.decide(original), task.decide(exported)
    if task.target_kind == "tags":  # per word
        same = [a == b for sentence_a, sentence_b in zip(decided_original, decided_exported, strict=True)
                for a, b in zip(sentence_a, sentence_b, strict=True)]
        largest = max((float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
                       zip(original, exported, strict=True) if len(a)), default=0.0)
        return Parity(agreement=float(np.mean(same)), agreement_of=f"same tag on {len(same)} words",
                      largest_difference=largest, difference_of="probability", **common)
    same = [np.array_equal(a, b) for a, b in zip(decided_original, decided_exported, strict=True)]
    what = "same label set" if task.target_kind == "label-set" else "same label"
    largest = float(np.abs(np.asarray(original) - np.asarray(exported)).max())
    return Parity(agreement=float(np.mean(same)), agreement_of=what, largest_difference=largest,
                  difference_of="probability", **common)


def parity_rows(loaded, check: str | None) -> tuple[list, str]:
    """(rows, how the report names them): the texts of `check`, read as predict reads its
    input, or else the model's own test predictions (the texts fine-tuning scored)."""
    task = loaded.task
    if check is not None:
        rows = list(task.read_file(check, {}, require_label=False))
        return rows, f"{_unit(task)} of {Path(check).name}"
    path = loaded.model_dir / task.predictions_file
    if not path.is_file():
        raise UserInputError(f"{loaded.model_dir}: no {task.predictions_file} (the test predictions of fine-tuning) "
                             "to compare the export with the original on; pass --check FILE with texts")
    # predictions.csv names its columns text and text_pair, whatever the training file's were
    rows = list(task.read_file(str(path), {"text_col": "text", "text_pair_col": "text_pair"}, require_label=False))
    return rows, f"test {_unit(task)}"


def _unit(task) -> str:
    return "sentences" if task.target_kind == "tags" else "texts"
