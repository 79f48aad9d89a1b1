"""`nlpft export --format onnx` and predict/evaluate on its output, with tiny random
transformers fine-tuned in the test: the export agrees with the original for every
exportable head (cls and mean pooling, text pairs, a GPT-2 decoder, multi-label,
regression, tagging) in fp32 and int8, and what it must refuse it refuses with exit code 2
(backbones and heads it cannot export, low agreement, a changed file, custom operators,
a missing extra). Also `predict --runtime/--precision`."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from nlpft.cli.main import main
from tests.conftest import save_tiny_bert
from tests import test_finetune
from tests.test_finetune import FAST, make_rows, write_csv
from tests.test_tagging import make_sentences, write_conll

# the fine-tuning tests' module-scoped data and tiny models, shared rather than rebuilt
data_csv, tiny_bert, tiny_gpt = test_finetune.data_csv, test_finetune.tiny_bert, test_finetune.tiny_gpt

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# fp32 training, so predict's --precision auto is fp32 too (it follows the model's training)
TRAIN = [*FAST, "--precision", "fp32"]


def finetune(out: Path, *args: str) -> Path:
    assert main(["finetune", "--out", str(out), *TRAIN, *args]) == 0
    return out


def export(model: Path, out: Path, *args: str) -> int:
    return main(["export", "--model", str(model), "--out", str(out), "--threads", "1", *args])


def predictions(model: Path, source: Path, out: Path, *args: str) -> list[dict]:
    assert main(["predict", "--model", str(model), "--input", str(source), "--out", str(out), *args]) == 0
    with open(out, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_same_predictions(first: list[dict], second: list[dict], tolerance: float = 1e-5) -> None:
    """The same decisions and probabilities within `tolerance` (regression: the same values)."""
    columns = [k for k in first[0] if k.startswith("p_")] or ["predicted"]
    if columns != ["predicted"]:
        assert [r["predicted"] for r in first] == [r["predicted"] for r in second]
    assert max(abs(float(a[k]) - float(b[k])) for a, b in zip(first, second, strict=True) for k in columns) \
        <= tolerance


def parity(out: Path) -> dict:
    report = json.loads((out / "parity.json").read_text())
    assert json.loads((out / "finetune.json").read_text())["onnx"]["parity"] == report
    return report


@pytest.fixture(scope="module")
def bert_clf(tmp_path_factory, data_csv, tiny_bert) -> Path:
    return finetune(tmp_path_factory.mktemp("runs") / "bert-clf", "--train", str(data_csv), "--model",
                    str(tiny_bert))


@pytest.fixture(scope="module")
def bert_onnx(tmp_path_factory, bert_clf) -> Path:
    out = tmp_path_factory.mktemp("exports") / "bert-onnx"
    assert export(bert_clf, out) == 0
    return out


@pytest.fixture(scope="module")
def new_texts(tmp_path_factory) -> Path:
    """Texts of one to three clauses: batches of several lengths, padded."""
    return write_csv(tmp_path_factory.mktemp("inputs") / "new.csv", make_rows(45, 7))


def test_export_writes_a_checked_copy_and_predicts_as_torch(bert_clf, bert_onnx, new_texts, tmp_path, capsys,
                                                           monkeypatch):
    report = parity(bert_onnx)
    assert report["rows"] == 30 and report["agreement"] == 1.0 and report["largest_difference"] < 1e-4
    assert report["quantization"] is None and report["source"] == "test texts"
    for name in ("model.onnx", "model.safetensors", "tokenizer.json", "config.json", "predictions.csv",
                 ".nlpft-output.json"):
        assert (bert_onnx / name).is_file(), name
    record = json.loads((bert_onnx / "finetune.json").read_text())["onnx"]
    assert record["inputs"] == ["input_ids", "attention_mask"] and record["opset"] == 18
    import hashlib

    assert record["sha256"] == hashlib.sha256((bert_onnx / "model.onnx").read_bytes()).hexdigest()
    torch_rows = predictions(bert_clf, new_texts, tmp_path / "torch.csv")

    # auto runs the export, never loading the torch weights
    from nlpft.finetune.backbones.hf_common import HFBackbone

    def no_torch_weights(*_):
        raise AssertionError("the torch model was loaded")

    with monkeypatch.context() as patched:
        patched.setattr(HFBackbone, "load_model", no_torch_weights)
        onnx_rows = predictions(bert_onnx, new_texts, tmp_path / "onnx.csv")
    assert_same_predictions(torch_rows, onnx_rows)


def test_export_prints_the_parity_line(bert_clf, tmp_path, capsys):
    assert export(bert_clf, tmp_path / "again", "--check", str(tmp_path / "missing.csv")) == 2
    assert "missing.csv" in capsys.readouterr().err
    source = write_csv(tmp_path / "check.csv", make_rows(12, 9))
    assert export(bert_clf, tmp_path / "again", "--check", str(source)) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("parity on 12 texts of check.csv: 100.0% same label, largest probability "
                                   "difference "), captured.out
    assert captured.out.rstrip().endswith("(fp32)")


def test_the_export_runs_attention_and_gelu_as_onnx_runtime_fused_operators(bert_onnx):
    """Each layer's attention is one MultiHeadAttention and its GELU one BiasGelu (ONNX
    Runtime's operators, in its com.microsoft domain); the residual layer norms stay plain
    (ONNX Runtime's SkipLayerNormalization kernel is slower than Add + LayerNormalization)."""
    import onnx

    layers = json.loads((bert_onnx / "config.json").read_text())["num_hidden_layers"]
    graph = onnx.load(str(bert_onnx / "model.onnx")).graph
    fused = [node.op_type for node in graph.node if node.domain == "com.microsoft"]
    assert fused.count("MultiHeadAttention") == layers, fused
    assert fused.count("BiasGelu") == layers, fused
    assert "SkipLayerNormalization" not in fused


def test_evaluate_on_the_export_gives_the_same_metrics(bert_clf, bert_onnx, data_csv, capsys):
    results = []
    for model in (bert_clf, bert_onnx):
        assert main(["evaluate", "--model", str(model), "--input", str(data_csv), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    for name in ("accuracy", "macro_f1", "mcc"):
        assert results[0][name] == results[1][name], name


def test_int8_export_is_smaller_quantized_and_agrees(bert_clf, bert_onnx, new_texts, tmp_path):
    import onnx

    out = tmp_path / "int8"
    assert export(bert_clf, out, "--quantize", "int8") == 0
    report = parity(out)
    assert report["quantization"] == "int8" and report["agreement"] >= 0.99
    assert (out / "model.onnx").stat().st_size < 0.75 * (bert_onnx / "model.onnx").stat().st_size
    operators = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger", "MultiHeadAttention"} <= operators, operators
    assert_same_predictions(predictions(bert_clf, new_texts, tmp_path / "torch.csv"),
                            predictions(out, new_texts, tmp_path / "int8.csv"), tolerance=0.05)


def test_int8_quantizes_every_matmul_when_that_agrees(bert_clf, tmp_path):
    import onnx

    out = tmp_path / "int8"
    assert export(bert_clf, out, "--quantize", "int8") == 0
    meta = json.loads((out / "finetune.json").read_text())
    assert meta["onnx"]["int8_layout"] == "all MatMuls" and parity(out)["int8_layout"] == "all MatMuls"
    assert "MatMul" not in {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}


def test_int8_keeps_the_down_projections_fp32_when_every_matmul_agrees_less(bert_clf, tmp_path, capsys,
                                                                             monkeypatch):
    import onnx

    from nlpft.finetune import onnx_export as ox

    real_compare = ox.compare

    def every_matmul_flips_labels(*args, **kwargs):  # as on a model whose GELU outputs int8 cannot hold
        found = real_compare(*args, **kwargs)
        if kwargs.get("int8_layout") == "all MatMuls":
            found.agreement = 0.98
        return found

    monkeypatch.setattr(ox, "compare", every_matmul_flips_labels)
    out = tmp_path / "int8"
    assert export(bert_clf, out, "--quantize", "int8") == 0
    assert "int8, all MatMuls: parity on 30 test texts: 98.0% same label" in capsys.readouterr().err
    report = parity(out)
    assert report["int8_layout"] == "down-projections fp32" and report["agreement"] >= ox.ALL_MATMULS_AGREEMENT
    assert "(int8, down-projections fp32)" in report["line"]
    graph = onnx.load(str(out / "model.onnx"))
    assert [n.op_type for n in graph.graph.node].count("MatMul") == len(ox.down_projections(graph)) == 2  # 2 layers


@pytest.mark.parametrize("kind", ["mean-pooling", "pairs"])
def test_mean_pooling_and_text_pairs_export(kind, data_csv, tiny_bert, tmp_path):
    if kind == "pairs":  # the label is the second text's: the token types must reach the graph
        first, second = make_rows(300, 11), make_rows(300, 12)
        random.Random(0).shuffle(second)
        rows = [{"text": a["text"], "second": b["text"], "label": b["label"]} for a, b in zip(first, second)]
        data = write_csv(tmp_path / "pairs.csv", rows, fields=("text", "second", "label"))
        extra = ["--train", str(data), "--text-pair-col", "second", "--max-length", "64"]
        inputs = ["input_ids", "attention_mask", "token_type_ids"]
    else:
        data = data_csv
        extra = ["--train", str(data), "--pooling", "mean"]
        inputs = ["input_ids", "attention_mask"]
    model = finetune(tmp_path / "model", "--model", str(tiny_bert), "--epochs", "2", *extra)
    out = tmp_path / "onnx"
    assert export(model, out) == 0
    assert parity(out)["agreement"] == 1.0
    assert json.loads((out / "finetune.json").read_text())["onnx"]["inputs"] == inputs
    assert_same_predictions(predictions(model, data, tmp_path / "torch.csv"),
                            predictions(out, data, tmp_path / "onnx.csv"))


def test_gpt2_decoder_reads_the_last_real_token_in_padded_batches(data_csv, tiny_gpt, new_texts, tmp_path):
    """GPT-2 pads with its end-of-text token and is read at the last real token: texts of
    several lengths in one batch must score as the torch model scores them."""
    model = finetune(tmp_path / "gpt", "--train", str(data_csv), "--model", str(tiny_gpt), "--epochs", "2")
    out = tmp_path / "gpt-onnx"
    assert export(model, out) == 0
    assert parity(out)["agreement"] == 1.0
    assert_same_predictions(predictions(model, new_texts, tmp_path / "torch.csv", "--batch-size", "16"),
                            predictions(out, new_texts, tmp_path / "onnx.csv", "--batch-size", "16"))


@pytest.mark.parametrize("task", ["multi", "regression"])
def test_multilabel_and_regression_export(task, tiny_bert, tmp_path, capsys):
    rng = random.Random(3)
    phrases = {"good": "the film was good", "bad": "the meal was awful", "usual": "the hotel was usual"}
    rows = []
    for _ in range(200):
        tags = [t for t in phrases if rng.random() < 0.45] or ["good"]
        rows.append({"text": " and ".join(phrases[t] for t in tags) + " today", "label": ";".join(tags),
                     "score": str(len(tags) + rng.random() * 0.1)})
    label_col = "label" if task == "multi" else "score"
    data = write_csv(tmp_path / "data.csv", rows, fields=("text", label_col))
    model = finetune(tmp_path / task, "--train", str(data), "--task", task, "--label-col", label_col,
                     "--model", str(tiny_bert), "--epochs", "2", "--max-length", "48")
    capsys.readouterr()
    assert export(model, tmp_path / "onnx") == 0
    line = capsys.readouterr().out
    report = parity(tmp_path / "onnx")
    assert report["agreement"] == 1.0
    if task == "multi":
        assert "100.0% same label set" in line
    else:
        assert report["difference_of"] == "value" and report["largest_difference"] <= report["tolerance"]
        assert "% within " in line and "largest value difference" in line
    assert_same_predictions(predictions(model, data, tmp_path / "torch.csv"),
                            predictions(tmp_path / "onnx", data, tmp_path / "onnx.csv"))


@pytest.fixture(scope="module")
def tagging(tmp_path_factory) -> dict:
    """A tagging file and a tiny BERT with a cased vocabulary for it (as tests/test_tagging.py)."""
    from nlpft.tokenization.subword import train_subword_tokenizer

    folder = tmp_path_factory.mktemp("tagged")
    lines = [" ".join(tokens) for tokens, _ in make_sentences(400, 5)]
    tok = train_subword_tokenizer(lines, "wordpiece", 120, model_max_length=64, lowercase=False)
    return {"train": write_conll(folder / "train.conll", make_sentences(160, 0)),
            "test": write_conll(folder / "test.conll", make_sentences(30, 1)),
            "model": save_tiny_bert(folder / "tiny-bert", tok)}


def test_tagger_export_tags_every_word_as_torch(tagging, tmp_path, capsys):
    model = finetune(tmp_path / "ner", "--task", "tag", "--train", str(tagging["train"]), "--model",
                     str(tagging["model"]), "--epochs", "4")
    capsys.readouterr()
    assert export(model, tmp_path / "ner-onnx") == 0
    assert "same tag on" in capsys.readouterr().out
    report = parity(tmp_path / "ner-onnx")
    assert report["agreement"] == 1.0 and report["source"] == "test sentences"
    results = []
    for directory in (model, tmp_path / "ner-onnx"):
        assert main(["evaluate", "--model", str(directory), "--input", str(tagging["test"]), "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
        assert main(["predict", "--model", str(directory), "--text", "we met Peter Jones in Rome today ."]) == 0
        results.append(capsys.readouterr().out)
    assert results[0]["micro_f1"] == results[2]["micro_f1"] and results[1] == results[3]


def test_what_cannot_be_exported_is_refused(data_csv, tagging, tmp_path, capsys):
    tfidf = tmp_path / "tfidf"
    assert main(["finetune", "--train", str(data_csv), "--model", "tfidf", "--out", str(tfidf), "--quiet"]) == 0
    crf = finetune(tmp_path / "crf", "--task", "tag", "--train", str(tagging["train"]), "--model",
                   str(tagging["model"]), "--crf", "--max-steps", "2")
    capsys.readouterr()
    assert export(tfidf, tmp_path / "x") == 2
    assert (f"nlpft export supports fine-tuned transformer backbones (hf-encoder, hf-decoder); {tfidf} uses tfidf, "
            "which already predicts without torch") in capsys.readouterr().err
    assert export(crf, tmp_path / "x") == 2
    assert "--crf decodes each sentence by Viterbi search" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_an_export_below_the_agreement_threshold_is_refused(bert_clf, bert_onnx, tmp_path, capsys, monkeypatch):
    """An export whose labels differ from the original's (here: its logits reversed) stops
    with the figures and leaves nothing, not even over an earlier export."""
    from nlpft.finetune.onnx_runtime import OnnxSession

    out = tmp_path / "bad"
    shutil.copytree(bert_onnx, out)  # the earlier export, which --overwrite would replace
    before = (out / "model.onnx").read_bytes()
    honest_call = OnnxSession.__call__

    def reversed_logits(self, **batch):
        return {"logits": honest_call(self, **batch)["logits"].flip(-1)}

    monkeypatch.setattr(OnnxSession, "__call__", reversed_logits)
    capsys.readouterr()
    assert export(bert_clf, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "export refused, nothing written: parity on 30 test texts:" in err and "below the 99% agreement" in err
    agreement = float(err.split("test texts: ")[1].split("%")[0])
    assert agreement < 99.0
    assert (out / "model.onnx").read_bytes() == before and not (tmp_path / "bad.partial").exists()


@pytest.fixture
def exported_copy(bert_onnx, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bert_onnx, copy)
    return copy


def test_a_changed_onnx_file_is_refused(exported_copy, capsys):
    data = bytearray((exported_copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (exported_copy / "model.onnx").write_bytes(bytes(data))
    assert main(["predict", "--model", str(exported_copy), "--text", "the film was good"]) == 2
    assert "model.onnx: changed since nlpft exported it" in capsys.readouterr().err
    assert main(["predict", "--model", str(exported_copy), "--text", "the film was good",
                 "--runtime", "torch"]) == 0  # the safetensors weights still serve


def test_a_graph_with_custom_operators_is_refused_even_with_its_checksum(exported_copy, capsys):
    import hashlib

    import onnx

    graph = onnx.load(str(exported_copy / "model.onnx"))
    graph.graph.node[-1].domain = "evil.ops"
    (exported_copy / "model.onnx").write_bytes(graph.SerializeToString())
    meta = json.loads((exported_copy / "finetune.json").read_text())
    meta["onnx"]["sha256"] = hashlib.sha256((exported_copy / "model.onnx").read_bytes()).hexdigest()
    (exported_copy / "finetune.json").write_text(json.dumps(meta))
    assert main(["predict", "--model", str(exported_copy), "--text", "the film was good"]) == 2
    err = capsys.readouterr().err
    assert f"uses operators nlpft does not write (evil.ops::{graph.graph.node[-1].op_type})" in err


def test_runtime_choice(bert_clf, bert_onnx, capsys, monkeypatch):
    assert main(["predict", "--model", str(bert_clf), "--text", "the film was good", "--runtime", "onnx"]) == 2
    assert (f"{bert_clf} has no ONNX export; run nlpft export --model {bert_clf} --format onnx --out DIR2"
            in capsys.readouterr().err)
    from nlpft.finetune.onnx_runtime import OnnxSession

    def no_session(*_args, **_kwargs):
        raise AssertionError("ONNX Runtime was used")

    monkeypatch.setattr(OnnxSession, "__init__", no_session)
    assert main(["predict", "--model", str(bert_onnx), "--text", "the film was good", "--runtime", "torch"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "pos"
    assert main(["predict", "--model", str(bert_onnx), "--text", "the film was good"]) == 1  # auto: the export
    assert "ONNX Runtime was used" in capsys.readouterr().err


def test_bf16_is_ignored_by_the_onnx_runtime_and_said(bert_onnx, capsys):
    assert main(["predict", "--model", str(bert_onnx), "--text", "the film was good", "--precision", "bf16"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "pos"
    assert "--precision bf16 applies to the torch runtime" in captured.err


def test_without_the_extra_each_command_names_it(bert_clf, bert_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    assert export(bert_clf, tmp_path / "x") == 2
    assert ("nlpft export needs the onnx extra (onnxruntime is not installed): pip install 'nlpft[onnx]'"
            in capsys.readouterr().err)
    assert main(["predict", "--model", str(bert_onnx), "--text", "the film was good"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'nlpft[onnx]', or pass --runtime torch" in err
    assert main(["predict", "--model", str(bert_onnx), "--text", "the film was good", "--runtime", "torch"]) == 0


def test_bf16_predictions_agree_with_fp32(bert_clf, new_texts, tmp_path):
    """--precision bf16 autocasts the matrix work (the probabilities move), the labels hold."""
    fp32 = predictions(bert_clf, new_texts, tmp_path / "fp32.csv", "--precision", "fp32")
    bf16 = predictions(bert_clf, new_texts, tmp_path / "bf16.csv", "--precision", "bf16")
    columns = [k for k in fp32[0] if k.startswith("p_")]
    differences = [abs(float(a[k]) - float(b[k])) for a, b in zip(fp32, bf16, strict=True) for k in columns]
    assert 0 < max(differences) < 0.05
    assert [r["predicted"] for r in fp32] == [r["predicted"] for r in bf16]


def test_python_api_runs_the_export(bert_onnx, data_csv):
    import nlpft

    clf = nlpft.load(bert_onnx)
    assert clf._loaded.runtime == "onnx"
    prediction = clf.predict("the film was excellent and lovely again")
    assert prediction.label == "pos"
    as_torch = nlpft.load(bert_onnx, runtime="torch", precision="fp32").predict(
        "the film was excellent and lovely again")
    assert np.allclose(list(prediction.scores.values()), list(as_torch.scores.values()), atol=1e-5)
    assert clf.evaluate(data_csv)["accuracy"] == clf.evaluate(data_csv, runtime="torch")["accuracy"]


def test_the_inference_benchmark_measures_what_bounds_its_rows(bert_onnx, tmp_path):
    """benchmarks/inference/kernels.py: matrix-product rates per runtime and precision, and
    the exported graph's time per operator kind, which the results file reports."""
    import importlib.util
    import subprocess

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "inference"
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps(row["text"]) + "\n" for row in make_rows(12, 3)), encoding="utf-8")
    done = subprocess.run([sys.executable, str(bench / "kernels.py"), "--graph", str(bert_onnx / "model.onnx"),
                           "--tokenizer", str(bert_onnx), "--texts", str(texts), "--repeats", "1"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    kernels = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"onnx-fp32", "onnx-int8", "torch-fp32"} <= set(kernels["gemm_gflops"])
    assert all(rate > 0 for rate in kernels["gemm_gflops"].values())
    shares = kernels["operator_shares"]
    assert abs(sum(shares.values()) - 1) < 1e-6 and "MultiHeadAttention" in shares

    spec = importlib.util.spec_from_file_location("inference_run", bench / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    text = "\n".join(run.kernels_report(kernels))
    assert f"| ONNX Runtime MatMul, fp32 | {kernels['gemm_gflops']['onnx-fp32']:.0f} | 1.00× |" in text
    assert f"MultiHeadAttention {100 * shares['MultiHeadAttention']:.0f}%" in text
