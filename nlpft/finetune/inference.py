"""A saved fine-tuning output loaded back and scoring rows: finetune.json is checked, the
task is rebuilt from it and the backbone named there loads the model directory. Neither
predict nor evaluate knows which task or backbone it runs.

The runtime is a layer under the backbone: `torch` loads the safetensors weights (the
backbone's `load`), `onnx` the file `nlpft export --format onnx` wrote, run by ONNX Runtime
(`nlpft.finetune.onnx_runtime`) behind the same `Prepared.model` call, so the backbone's
batching and the task's encoding, windows and decisions are the same for both.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlpft.errors import UserInputError, check_threads
from nlpft.training.precision import PRECISIONS

META_FILE = "finetune.json"
RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class LoadedModel:
    model_dir: Path
    meta: dict
    task: object  # a Task
    backbone: object  # a Backbone
    prepared: object = None  # the backbone's loaded model; None until the first `score`
    runtime: str = "torch"  # "torch" or "onnx" (resolved from "auto" by `load_for_inference`)
    precision: str = "fp32"  # torch runtime: "fp32" or "bf16" (autocast)
    threads: int | None = None  # None: torch's thread count

    def score(self, rows: list, batch_size: int = 32) -> tuple[np.ndarray, int]:
        """(the task's scores, how many texts were cut at the length limit) for `rows`."""
        if self.prepared is None:
            self.prepared = self._prepare()
        with self._torch_settings():
            logits, truncated = self.backbone.logits(self.prepared, self.task, rows, batch_size)
        return self.task.scores(logits), truncated

    def _prepare(self):
        if self.runtime == "onnx":
            from nlpft.finetune.onnx_runtime import OnnxSession

            prepared = self.backbone.load_inputs(self.model_dir, self.meta, self.task)
            prepared.model = OnnxSession.from_export(self.model_dir, self.meta, self.threads)
            return prepared
        return self.backbone.load(self.model_dir, self.meta, self.task)

    def _torch_settings(self):
        """Around the torch model's calls: bf16 autocast (--precision), torch's thread count set
        to --threads (ONNX Runtime took it when its session was built)."""
        if self.runtime != "torch" or (self.precision == "fp32" and self.threads is None):
            return contextlib.nullcontext()
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")


def load_for_inference(model_dir: str | Path, runtime: str = "auto", precision: str = "auto",
                       threads: int | None = None) -> LoadedModel:
    """The task and backbone of `model_dir` (the model itself loads on the first `score`).

    runtime    auto: ONNX Runtime when the directory holds an ONNX export, else torch
    precision  torch runtime: auto (`_torch_precision`), fp32 or bf16 (autocast); the ONNX
               runtime runs the export as written
    threads    intra-op threads of torch or ONNX Runtime (None: torch's current count)
    """
    from nlpft.finetune.backbones import backbone_class
    from nlpft.finetune.tasks import task_class

    if runtime not in RUNTIMES:
        raise UserInputError(f"runtime {runtime!r}: must be one of {', '.join(RUNTIMES)}")
    check_threads(threads)
    meta = load_meta(model_dir)
    source = Path(model_dir) / META_FILE
    task = task_class(meta["task"]["task"]).from_meta(meta, source)
    backbone = backbone_class(meta["backbone"])(str(model_dir))
    runtime = _resolve_runtime(runtime, meta, model_dir)
    if precision not in PRECISIONS:
        raise UserInputError(f"precision {precision!r}: must be one of {', '.join(PRECISIONS)}")
    if runtime == "onnx":
        from nlpft.finetune.onnx_runtime import require_onnx_extra

        require_onnx_extra(f"{model_dir} is an ONNX export: running it",
                           ", or pass --runtime torch to use its safetensors weights")
        precision = "fp32"  # no autocast: the export runs in its own number format (fp32 or int8)
    else:
        precision = _torch_precision(precision, meta, backbone)
    return LoadedModel(Path(model_dir), meta, task, backbone, runtime=runtime, precision=precision, threads=threads)


def _torch_precision(requested: str, meta: dict, backbone) -> str:
    """"fp32" or "bf16" for the torch runtime. auto: bf16 autocast for a fine-tuned transformer
    (`bf16_inference`) on a CPU that does bf16 natively, unless it was fine-tuned in fp32: then
    fp32, so predict and evaluate reproduce the test predictions fine-tuning wrote."""
    from nlpft.training.precision import resolve_precision

    if requested == "auto" and (meta.get("options") or {}).get("precision") == "fp32":
        return "fp32"
    return resolve_precision(requested, transformer=backbone.bf16_inference)


def _resolve_runtime(runtime: str, meta: dict, model_dir) -> str:
    exported = meta.get("onnx") is not None
    if runtime == "auto":
        return "onnx" if exported else "torch"
    if runtime == "onnx" and not exported:
        raise UserInputError(f"{model_dir} has no ONNX export; run nlpft export --model {model_dir} --format onnx "
                             "--out DIR2 and pass DIR2, or use --runtime torch")
    return runtime


def load_meta(model_dir: str | Path) -> dict:
    path = Path(model_dir) / META_FILE
    if not Path(model_dir).is_dir():
        raise UserInputError(f"{model_dir}: not a directory; pass the --out directory of `nlpft finetune`")
    if not path.is_file():
        raise UserInputError(f"{model_dir}: no {META_FILE} here; pass the --out directory of `nlpft finetune`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserInputError(f"{path}: not valid JSON ({exc})") from None
    check_meta(meta, path)
    return meta


def check_meta(meta: object, path: Path) -> None:
    """The fields predict/evaluate read, each of the right kind; a damaged or hand-made
    finetune.json stops here rather than as a KeyError after the model loads. The fields
    every output has are checked here, the task's own by its `check_meta`."""
    from nlpft.finetune.backbones import backbone_class, backbone_names
    from nlpft.finetune.tasks import task_class, task_names
    from nlpft.finetune.tasks.base import json_kind

    def bad(problem: str) -> UserInputError:
        return UserInputError(f"{path}: {problem}; the directory is not a complete nlpft fine-tuning output: "
                              "retrain, or pass another --model")

    if not isinstance(meta, dict):
        raise bad(f"a JSON {type(meta).__name__}, not an object")
    for name, kinds, what in (("backbone", str, "a text"), ("task", dict, "an object")):
        if name not in meta:
            raise bad(f"missing field {name!r}")
        if not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {json_kind(meta[name])}, expected {what}")
    for name, kinds, what in (("max_length", int, "a whole number"), ("text_framing", dict, "an object"),
                              ("options", dict, "an object")):
        if meta.get(name) is not None and not isinstance(meta[name], kinds):
            raise bad(f"field {name!r} is {json_kind(meta[name])}, expected {what} or null")
    if meta["backbone"] not in backbone_names():
        raise bad(f"unknown backbone {meta['backbone']!r} (known: {', '.join(backbone_names())})")
    if meta["task"].get("task") not in task_names():
        raise bad(f"field 'task.task' is {meta['task'].get('task')!r}, expected one of {', '.join(task_names())}")
    task_class(meta["task"]["task"]).check_meta(meta, bad)
    backbone_class(meta["backbone"]).saved_options(meta, bad)
    if meta.get("onnx") is not None:
        from nlpft.finetune.onnx_runtime import check_onnx_meta

        if not backbone_class(meta["backbone"]).exports_onnx:
            raise bad(f"field 'onnx' on a {meta['backbone']} model, which nlpft never exports")
        check_onnx_meta(meta["onnx"], bad)
