"""A model exported by `nlpft export --format onnx`, run by ONNX Runtime under the shared
inference path.

`OnnxSession` stands where the torch model stands in `Prepared.model`: called with the
task collator's batch (torch int64 tensors), it returns {"logits": a torch tensor}, so
`Backbone.logits` (length-sorted, dynamically padded batches) and the task's pooling and
decisions run unchanged.

The exported file is trusted only as nlpft wrote it: finetune.json's "onnx" object records
its sha256, checked against the very bytes the session is built from, and every node must
use a standard ONNX domain or ONNX Runtime's own (`com.microsoft`: its quantized and fused
operators); a graph calling a custom operator is refused, whatever its checksum.

onnx and onnxruntime come with the `onnx` extra and are imported only when a session is
built, so this module stays cheap to import.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from nlpft.errors import UserInputError

#: what the exported graph returns, and the only output read
LOGITS = "logits"
#: the operator domains a graph nlpft wrote may use: ONNX's own and ONNX Runtime's
#: (quantized MatMulInteger relatives, fused attention and layer norms)
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
EXTRA_HINT = "pip install 'nlpft[onnx]'"
#: ONNX Runtime fusions the session skips: its SkipLayerNormalization CPU kernel took 6.4 ns
#: per element where Add + LayerNormalization took 1.1 (one thread, MiniLM's 32 x 256 x 384),
#: 13% of an int8 MiniLM's time
UNFUSED = ["SkipLayerNormFusion"]


def require_onnx_extra(purpose: str, alternative: str = "",
                       modules: tuple[str, ...] = ("onnx", "onnxruntime")) -> None:
    """Raise a UserInputError naming the extra when one of `modules` cannot be imported;
    `purpose` says what needed it ("nlpft export"), `alternative` ends the line (", or ...")."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserInputError(f"{purpose} needs the onnx extra ({name} is not installed): "
                                 f"{EXTRA_HINT}{alternative}") from None


def check_onnx_meta(record: object, bad) -> None:
    """finetune.json's "onnx" object holds what loading the export reads; `bad(problem)`
    makes the error otherwise."""
    from nlpft.finetune.tasks.base import json_kind

    if not isinstance(record, dict):
        raise bad(f"field 'onnx' is {json_kind(record)}, expected an object")
    for name in ("file", "sha256"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise bad(f"field 'onnx.{name}' is {json_kind(record.get(name))}, expected a text")
    if Path(record["file"]).name != record["file"]:
        raise bad(f"field 'onnx.file' is {record['file']!r}, expected a file name inside the model directory")
    inputs = record.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(name, str) for name in inputs):
        raise bad(f"field 'onnx.inputs' is {json_kind(inputs)}, expected an array of input names")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def foreign_operators(model) -> list[str]:
    """"domain::op" of every node of the ModelProto `model` (subgraphs and the model's own
    functions included) outside `STANDARD_DOMAINS`; a call of a function the model defines
    is judged by that function's body."""
    local = {(function.domain, function.name) for function in model.functions}
    found: set[str] = set()

    def visit(nodes) -> None:
        for node in nodes:
            if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in local:
                found.add(f"{node.domain}::{node.op_type}")
            for attribute in node.attribute:  # If/Loop/Scan bodies
                graphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
                for graph in graphs:
                    visit(graph.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return sorted(found)


def checked_model_bytes(model_dir: Path, record: dict) -> bytes:
    """The exported file's bytes, once its checksum and its operators are verified."""
    import onnx

    path = Path(model_dir) / record["file"]
    if not path.is_file():
        raise UserInputError(f"{path}: missing; finetune.json names it as the ONNX export. Export again "
                             f"(nlpft export --model SOURCE --format onnx --out {model_dir}) or pass --runtime torch")
    data = path.read_bytes()
    if sha256_of(data) != record["sha256"]:
        raise UserInputError(f"{path}: changed since nlpft exported it (its sha256 is not the one finetune.json "
                             "records); export the model again, or pass --runtime torch to use its safetensors weights")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and its relatives
        raise UserInputError(f"{path}: not a readable ONNX model ({exc})") from None
    foreign = foreign_operators(model)
    if foreign:
        raise UserInputError(f"{path}: uses operators nlpft does not write ({', '.join(foreign[:5])}); refused. "
                             "Export the model again with nlpft export")
    return data


def build_session(model_bytes: bytes, threads: int, profile_prefix: str | None = None, quiet: bool = False):
    """The ONNX Runtime CPU session `nlpft predict` runs a graph in (also the export's check
    that the graph loads, and the inference benchmark's profile of one); `profile_prefix`
    switches ONNX Runtime's profiler on; `quiet` silences its errors too (for a caller that
    expects a rejection and handles it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the matrix work of one batch
    options.inter_op_num_threads = 1  # one node at a time: a transformer's graph is a chain
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4 if quiet else 3  # fatal only / errors only
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=UNFUSED)


class OnnxSession:
    """An ONNX Runtime session over an exported model, called like the torch model it
    replaces: `session(**batch)["logits"]`."""

    def __init__(self, model_bytes: bytes, threads: int, source: str = "model.onnx"):
        import onnxruntime as ort

        self.source = source
        try:
            self.session = build_session(model_bytes, threads)
        except Exception as exc:  # onnxruntime's InvalidGraph, Fail, ... (an opset or operator it lacks)
            from nlpft.pretrained.loading.safety import first_line

            raise UserInputError(f"{source}: ONNX Runtime {ort.__version__} cannot run it ({first_line(exc)}); export "
                                 "the model again, with a lower --opset if needed") from None
        self.input_names = [node.name for node in self.session.get_inputs()]

    @classmethod
    def from_export(cls, model_dir: Path, meta: dict, threads: int | None = None) -> OnnxSession:
        """The export recorded in `meta` ("onnx"), verified (`checked_model_bytes`);
        `threads` None: as many as torch uses."""
        require_onnx_extra("the ONNX runtime")  # checked by `load_for_inference`; here for direct callers
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        record = meta["onnx"]
        return cls(checked_model_bytes(model_dir, record), threads, str(Path(model_dir) / record["file"]))

    def __call__(self, **batch) -> dict:
        import torch

        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise UserInputError(f"{self.source}: the graph takes {', '.join(missing)}, which this model's inputs "
                                 "lack; export the model again")
        # the collator's int64 tensors, shared with numpy (no copy)
        feed = {name: batch[name].numpy() for name in self.input_names}
        (logits,) = self.session.run([LOGITS], feed)
        return {LOGITS: torch.from_numpy(logits)}
