"""`nlpft serve`: the micro-batcher on its own, the app run by uvicorn on a free loopback port
in a thread (called with a real HTTP client), and the command in a subprocess for what
only a process shows (the ready line, SIGTERM, --workers). Models are TF-IDF ones trained
in a second, and a tiny random BERT for tagging; tests wait on events, never on the clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

import nlpft
from nlpft.cli.main import main
from nlpft.finetune.inference import load_for_inference
from nlpft.finetune.options import ServeOptions
from nlpft.runners.serve import MISSING_EXTRA, listening_socket, uvicorn_settings
from nlpft.serving.app import create_app
from nlpft.serving.batcher import MicroBatcher, QueueFull
from tests.test_finetune import (  # noqa: F401 (fixtures)
    data_csv,
    make_rows,
    review_text,
    tiny_bert,
    tiny_gpt,
    write_csv,
)
from tests.test_tagging import make_sentences, write_conll

WAIT_S = 120  # the longest any awaited event may take on a busy machine
GOOD = {"texts": ["the film was great and lovely", "the meal was awful and poor today"]}


def wait_until(ready, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.01)


# -- models ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tfidf_model(tmp_path_factory, data_csv) -> Path:  # noqa: F811
    return nlpft.finetune(train=str(data_csv), model="tfidf", quiet=True,
                          out=str(tmp_path_factory.mktemp("runs") / "tfidf")).path


def _phrase_rows() -> list[dict]:
    rng = random.Random(4)
    phrases = {"good": "the film was good", "bad": "the meal was awful", "usual": "the hotel was usual"}
    rows = []
    for _ in range(150):
        tags = [t for t in phrases if rng.random() < 0.45] or ["good"]
        rows.append({"text": " and ".join(phrases[t] for t in tags), "label": ";".join(tags), "score": len(tags)})
    return rows


@pytest.fixture(scope="module")
def other_models(tmp_path_factory, tiny_bert) -> dict:  # noqa: F811
    """{kind: model directory} for multi-label, regression, text pairs and tagging."""
    folder = tmp_path_factory.mktemp("other-runs")
    rows = _phrase_rows()
    models = {}
    for task, label_col in (("multi", "label"), ("regression", "score")):
        data = write_csv(folder / f"{task}.csv", rows, fields=("text", label_col))
        models[task] = nlpft.finetune(train=str(data), task=task, label_col=label_col, model="tfidf", quiet=True,
                                      out=str(folder / task)).path
    first, second = make_rows(300, 11), make_rows(300, 12)
    random.Random(0).shuffle(second)
    pairs = write_csv(folder / "pairs.csv", [{"text": a["text"], "second": b["text"], "label": b["label"]}
                                             for a, b in zip(first, second, strict=True)],
                      fields=("text", "second", "label"))
    models["pairs"] = nlpft.finetune(train=str(pairs), text_pair_col="second", model="tfidf", quiet=True,
                                     out=str(folder / "pairs")).path
    tags = write_conll(folder / "tags.conll", make_sentences(120, 0))
    models["tag"] = nlpft.finetune(train=str(tags), task="tag", model=str(tiny_bert), out=str(folder / "ner"),
                                   quiet=True, method="standard", max_steps=4, max_length=32, batch_size=8).path
    return models


# -- the app, served by uvicorn in a thread -----------------------------------------------------
class LiveServer:
    """`create_app` for `model_dir` run by uvicorn (the runner's settings) on a free loopback
    port, in a thread; `loaded` replaces the model's loader (e.g. a gated or failing one)."""

    def __init__(self, model_dir: Path, loaded=None, **options):
        self.opts = ServeOptions(model=str(model_dir), port=0, **options)
        self.listener = listening_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.app = create_app(self.opts, loaded, url=self.url)
        # log_config None: uvicorn leaves the test process's logging as it is
        self.server = uvicorn.Server(uvicorn.Config(self.app, **uvicorn_settings(self.opts), log_config=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=WAIT_S)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), "server start")
        assert self.server.started, "the server did not start"
        return self

    def wait_ready(self) -> LiveServer:
        wait_until(lambda: self.client.get("/health").status_code == 200, "ready model")
        return self

    def batching(self) -> dict:
        return self.client.get("/model").json()["batching"]

    def __exit__(self, *exc_info) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the server did not stop"


def gated(model_dir: Path, fail_on: str | None = None):
    """The model of `model_dir` whose calls wait while `gate` is clear (it starts set) and
    set `entered` when one begins; a text containing `fail_on` makes the call fail."""
    loaded = load_for_inference(model_dir)
    score = loaded.score
    gate, entered = threading.Event(), threading.Event()
    gate.set()

    def gated_score(rows, batch_size=32):
        entered.set()
        assert gate.wait(WAIT_S), "the test never opened the gate"
        if fail_on is not None and any(fail_on in row.text for row in rows):
            raise RuntimeError("the model broke")
        return score(rows, batch_size)

    loaded.score = gated_score
    return loaded, gate, entered


def post_in_background(client: httpx.Client, body: dict) -> tuple[threading.Thread, list]:
    """POST `body` to /predict from a thread; the response (or the error) lands in the list."""
    result: list = []

    def post() -> None:
        try:
            result.append(client.post("/predict", json=body))
        except Exception as exc:  # shown by the assertion on the result
            result.append(exc)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, result


@pytest.fixture(scope="module")
def live(tfidf_model) -> LiveServer:
    with LiveServer(tfidf_model) as server:
        yield server.wait_ready()


def test_endpoints_answer_what_the_python_api_predicts(live, tfidf_model):
    health = live.client.get("/health").json()
    assert health["status"] == "ready" and health["task"] == "single" and health["backbone"] == "tfidf"
    model = live.client.get("/model").json()
    assert model["labels"] == ["neg", "neutral", "pos"] and model["task"] == "single"
    assert model["metrics"]["accuracy"] >= 0.9 and model["limits"]["max_texts"] == 256

    answer = live.client.post("/predict", json=GOOD)
    assert answer.status_code == 200, answer.text
    expected = [dataclasses.asdict(p) for p in nlpft.load(tfidf_model).predict(GOOD["texts"])]
    predictions = answer.json()["predictions"]
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    for served, local in zip(predictions, expected, strict=True):
        assert served["label"] == local["label"]
        assert served["scores"] == pytest.approx(local["scores"], abs=1e-9)
    one = live.client.post("/predict", json={"text": GOOD["texts"][0]}).json()
    assert one["prediction"]["label"] == "pos"
    # curl -d sends form encoding: the body is still read as JSON
    form = live.client.post("/predict", content=json.dumps(GOOD),
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200 and form.json() == answer.json()

    docs = live.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = live.client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    assert "texts" in schema["content"]["application/json"]["schema"]["properties"]
    missing = live.client.get("/no-such-page")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


@pytest.mark.parametrize("kind", ["multi", "regression", "pairs", "tag"])
def test_every_task_answers_as_the_python_api(other_models, kind):
    texts = {"tag": ["we met John Smith in Paris today ."],
             "pairs": ["the film was good and lovely"]}.get(kind, ["the film was good and the meal was awful"])
    pairs = ["the meal was awful and dreadful"] if kind == "pairs" else None
    request = {"texts": texts, **({"text_pairs": pairs} if pairs else {})}
    with LiveServer(other_models[kind]) as server:
        answer = server.wait_ready().client.post("/predict", json=request)
        assert answer.status_code == 200, answer.text
        if kind == "pairs":  # a pair model needs its second texts
            refused = server.client.post("/predict", json={"texts": texts})
            assert refused.status_code == 422 and refused.json()["field"] == "text_pairs"
    local = [json.loads(json.dumps(dataclasses.asdict(p))) for p in nlpft.load(other_models[kind]).predict(texts, pairs)]
    (served,) = answer.json()["predictions"]
    assert served.keys() >= {"label", "scores"}
    assert served["label"] == local[0]["label"]
    assert json.dumps(served["scores"]) and served["scores"] == pytest.approx(local[0]["scores"], abs=1e-6)
    if kind == "tag":
        assert served["words"] == ["we", "met", "John", "Smith", "in", "Paris", "today", "."]
        assert served["entities"] == local[0]["entities"]
    if kind == "multi":
        assert {"bad", "good"} <= set(served["label"])
    if kind == "regression":
        assert isinstance(served["label"], float) and served["scores"] == {}
    if kind == "pairs":
        assert served["label"] == "neg"  # the label of the second text


BACKBONE_SPECS = {"hf-encoder": "bert", "hf-decoder": "gpt", "static": "w2v", "rnn-lm": "lm"}


@pytest.mark.parametrize("backbone", list(BACKBONE_SPECS))
def test_every_backbone_serves_what_the_python_api_predicts(backbone, data_csv, tiny_bert, tiny_gpt,  # noqa: F811
                                                            review_text, tmp_path):  # noqa: F811
    """Each backbone's model, trained a few steps, scored on the server's model thread."""
    quick = {"quiet": True, "max_steps": 4, "batch_size": 8, "threads": 1}
    spec = BACKBONE_SPECS[backbone]
    if spec == "w2v":
        spec = str(nlpft.embed.train(corpus=str(review_text), dim=16, min_count=1, epochs=1, threads=1, quiet=True,
                                     out=str(tmp_path / "w2v")).path)
    elif spec == "lm":
        spec = str(nlpft.lm.train(corpus=str(review_text), out=str(tmp_path / "lm"), max_steps=2, embedding_dim=16,
                                  hidden_dim=16, num_layers=1, bptt=8, batch_size=4, threads=1, quiet=True).path)
    else:
        spec = str(tiny_bert if spec == "bert" else tiny_gpt)
        quick.update(method="standard", max_length=32)
    model = nlpft.finetune(train=str(data_csv), model=spec, out=str(tmp_path / "clf"), **quick).path
    assert json.loads((model / "finetune.json").read_text())["backbone"] == backbone
    with LiveServer(model) as server:
        answer = server.wait_ready().client.post("/predict", json=GOOD)
    assert answer.status_code == 200, answer.text
    local = nlpft.load(model).predict(GOOD["texts"])
    for served, expected in zip(answer.json()["predictions"], local, strict=True):
        assert served["label"] == expected.label
        assert served["scores"] == pytest.approx(expected.scores, abs=1e-5)


def test_an_onnx_export_is_served_by_onnx_runtime_unless_runtime_says_torch(data_csv, tiny_bert,  # noqa: F811
                                                                            tmp_path):
    """`nlpft export`'s directory serves like any model: ONNX Runtime underneath by default,
    its safetensors weights with runtime torch, the same labels either way."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = nlpft.finetune(train=str(data_csv), model=str(tiny_bert), out=str(tmp_path / "clf"), quiet=True,
                           max_steps=4, batch_size=8, threads=1, method="standard", max_length=32).path
    assert main(["export", "--model", str(model), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 0
    answers = {}
    for runtime in ("auto", "torch"):
        with LiveServer(tmp_path / "onnx", runtime=runtime, precision="fp32") as server:
            answers[runtime] = server.wait_ready().client.post("/predict", json=GOOD).json()["predictions"]
            assert server.client.get("/model").json()["runtime"] == {"auto": "onnx", "torch": "torch"}[runtime]
    for onnx, torch_answer in zip(answers["auto"], answers["torch"], strict=True):
        assert onnx["label"] == torch_answer["label"]
        assert onnx["scores"] == pytest.approx(torch_answer["scores"], abs=1e-4)


def chunks(total: int, size: int = 1 << 16) -> list[bytes]:
    """`total` bytes as a list of chunks: httpx streams it without a Content-Length."""
    return [b"x" * min(size, total - start) for start in range(0, total, size)]


BAD_REQUESTS = [  # what is sent, the status, the field named, the limit named
    pytest.param({"content": b'{"texts": ["unclosed'}, 400, "body", None, id="malformed JSON"),
    pytest.param({"content": b"\xff\xfe\xfa"}, 400, "body", None, id="not text"),
    pytest.param({"content": b"[" * 100_000 + b"]" * 100_000}, 400, "body", None, id="arrays nested 100,000 deep"),
    pytest.param({"json": ["great film"]}, 422, "body", None, id="an array"),
    pytest.param({"json": {"texts": "great film"}}, 422, "texts", None, id="texts a string"),
    pytest.param({"json": {"texts": ["great film", 7]}}, 422, "texts[1]", None, id="a number for a text"),
    pytest.param({"json": {"text": {"a": 1}}}, 422, "text", None, id="an object for a text"),
    pytest.param({"json": {"texts": []}}, 422, "texts", None, id="an empty list"),
    pytest.param({"json": {}}, 422, "texts", None, id="no texts"),
    pytest.param({"json": {"text": "a film", "texts": ["a film"]}}, 422, "texts", None, id="text and texts"),
    pytest.param({"json": {"textz": ["a film"]}}, 422, "textz", None, id="an unknown field"),
    pytest.param({"json": {"texts": ["a film", " \n "]}}, 422, "texts[1]", None, id="a blank text"),
    pytest.param({"content": b'{"texts": ["a film", "half \\ud800 a character"]}'}, 422, "texts[1]", None,
                 id="a lone surrogate"),
    pytest.param({"json": {"texts": ["a film"], "text_pairs": ["another"]}}, 422, "text_pairs", None,
                 id="pairs for a single-text model"),
    pytest.param({"content": b"x" * 50_000_000}, 413, "body", 2 * 1024 * 1024, id="a 50 MB body"),
    pytest.param({"content": chunks(3_000_000)}, 413, "body", 2 * 1024 * 1024,
                 id="a 3 MB body without Content-Length"),
    pytest.param({"json": {"texts": ["a film"] * 100_000}}, 413, "texts", 256, id="100,000 texts"),
    pytest.param({"json": {"text": "a" * 10_000_000}}, 413, "body", 2 * 1024 * 1024, id="a 10 MB text"),
    pytest.param({"json": {"texts": ["a film", "a" * 30_000]}}, 413, "texts[1]", 20_000, id="a 30,000-character text"),
]


@pytest.mark.parametrize("request_kwargs,status,field,limit", BAD_REQUESTS)
def test_bad_requests_get_a_json_error_naming_field_and_limit_and_the_server_keeps_serving(
        live, request_kwargs, status, field, limit):
    answer = live.client.post("/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and body["field"] == field and body.get("limit") == limit, body
    if limit is not None:
        assert f"{limit:,}" in body["error"] and "--max-" in body["error"], body
    if isinstance(request_kwargs.get("content"), list):  # no Content-Length: stopped while streaming
        assert "body is over" in body["error"] and "transfer-encoding" in answer.request.headers
    assert live.client.post("/predict", json=GOOD).status_code == 200


def test_health_says_loading_until_the_model_answered_a_first_text(tfidf_model):
    loaded, gate, entered = gated(tfidf_model)
    gate.clear()  # the warm-up prediction waits
    with LiveServer(tfidf_model, loaded) as server:
        wait_until(entered.is_set, "warm-up call")
        health = server.client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"
        early = server.client.post("/predict", json=GOOD)
        assert early.status_code == 503 and early.headers["retry-after"] == "1" and "loading" in early.json()["error"]
        gate.set()
        server.wait_ready()
        assert server.client.post("/predict", json=GOOD).status_code == 200


def test_a_full_queue_answers_503_with_retry_after_then_recovers(tfidf_model):
    loaded, gate, entered = gated(tfidf_model)
    with LiveServer(tfidf_model, loaded, max_queue=2, max_texts=2, max_wait_ms=0) as server:
        server.wait_ready()
        gate.clear()
        entered.clear()
        running, first = post_in_background(server.client, {"texts": ["a good film"]})
        wait_until(entered.is_set, "model call")  # the first request is in the model: not queued
        queued, second = post_in_background(server.client, {"texts": ["x y", "z w"]})
        wait_until(lambda: server.batching()["queued"] == 2, "two queued texts")
        full = server.client.post("/predict", json={"text": "one more film"})
        assert full.status_code == 503 and full.headers["retry-after"] == "1", full.text
        assert full.json()["limit"] == 2 and "--max-queue" in full.json()["error"]
        gate.set()
        for thread in (running, queued):
            thread.join(WAIT_S)
        assert first[0].status_code == 200 and second[0].status_code == 200, (first[0].text, second[0].text)
        assert server.client.post("/predict", json=GOOD).status_code == 200


def test_a_failing_model_call_fails_only_the_request_that_broke_it(tfidf_model):
    """A request that breaks the model shares its call with a good one: the call is tried
    again request by request, and only the breaking one gets a 500."""
    loaded, gate, entered = gated(tfidf_model, fail_on="boom")
    with LiveServer(tfidf_model, loaded, max_wait_ms=0) as server:
        server.wait_ready()
        gate.clear()
        entered.clear()
        holding = post_in_background(server.client, {"text": "the first film"})
        wait_until(entered.is_set, "model call")
        broken = post_in_background(server.client, {"texts": ["a boom film"]})
        good = post_in_background(server.client, GOOD)
        wait_until(lambda: server.batching()["queued"] == 3, "two queued requests")
        gate.set()
        for thread, _ in (holding, broken, good):
            thread.join(WAIT_S)
        assert broken[1][0].status_code == 500 and "the model broke" in broken[1][0].json()["error"]
        assert good[1][0].status_code == 200 and holding[1][0].status_code == 200
        assert server.client.post("/predict", json=GOOD).status_code == 200
        assert server.batching()["failed_calls"] == 2  # the shared call, then the broken request alone


@pytest.mark.parametrize("max_batch,calls", [(64, 2), (1, 9)])
def test_concurrent_requests_share_model_calls_unless_max_batch_is_1(tfidf_model, max_batch, calls):
    """One request holds the model while eight more arrive: they are scored in one call
    together, or one call each with --max-batch 1."""
    loaded, gate, entered = gated(tfidf_model)
    with LiveServer(tfidf_model, loaded, max_batch=max_batch, max_wait_ms=0) as server:
        server.wait_ready()
        before = server.batching()["model_calls"]
        gate.clear()
        entered.clear()
        threads = [post_in_background(server.client, {"text": "the first film"})]
        wait_until(entered.is_set, "model call")
        texts = [f"the {word} film was good" for word in "abcdefgh"]
        threads += [post_in_background(server.client, {"text": text}) for text in texts]
        wait_until(lambda: server.batching()["queued"] == 8, "eight queued requests")
        gate.set()
        answers = []
        for thread, result in threads:
            thread.join(WAIT_S)
            answers.append(result[0])
        assert all(answer.status_code == 200 for answer in answers)
        stats = server.batching()
        assert stats["model_calls"] - before == calls
        assert stats["largest_batch"] == min(max_batch, 8) or max_batch == 1 and stats["largest_batch"] == 1


def test_a_slow_client_holds_up_no_other(tfidf_model):
    """One client reads a large answer a byte at a time, another stalls mid-request: a third
    is answered meanwhile."""
    with LiveServer(tfidf_model, max_texts=4000, max_queue=4000) as server:
        server.wait_ready()
        body = json.dumps({"texts": [f"the film number {i} was good" for i in range(4000)]}).encode()
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.listener.getsockname()[1]))
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert slow.recv(1) == b"H"
        stalled = socket.create_connection(("127.0.0.1", server.listener.getsockname()[1]))
        stalled.sendall(b'POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{"te')
        quick = httpx.post(server.url + "/predict", json=GOOD, timeout=30)
        assert quick.status_code == 200
        answer = bytearray(b"H")
        while not answer.endswith(b"\r\n\r\n"):  # the head, then as many bytes as it announces
            answer += slow.recv(1)
        length = int(re.search(rb"content-length: (\d+)", bytes(answer)).group(1))
        head = len(answer)
        while len(answer) < head + length:
            byte = slow.recv(1)
            assert byte, "the slow client's answer ended early"
            answer += byte
        assert answer.startswith(b"HTTP/1.1 200")
        assert len(json.loads(bytes(answer[head:]))["predictions"]) == 4000
        slow.close()
        stalled.close()


# -- the batcher on its own --------------------------------------------------------------------
def test_the_batcher_sorts_by_length_and_returns_each_request_its_own_results():
    calls = []

    def score(items):
        calls.append(list(items))
        return [item.upper() for item in items]

    async def scenario():
        batcher = MicroBatcher(score, max_batch=10, max_wait_s=60, max_queue=100)
        batcher.start()
        # the three requests fill the batch (10 items), so nobody waits the 60 s
        results = await asyncio.gather(batcher.submit(["cccc", "a"]), batcher.submit(["bb", "dddddd", "e"]),
                                       batcher.submit(["ff", "g", "hhh", "iiiii", "jj"]))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert results == [["CCCC", "A"], ["BB", "DDDDDD", "E"], ["FF", "G", "HHH", "IIIII", "JJ"]]
    assert len(calls) == 1 and [len(item) for item in calls[0]] == sorted(len(item) for item in calls[0])


def test_the_batcher_never_splits_a_request_nor_passes_max_batch_with_two():
    calls = []

    def score(items):
        calls.append(len(items))
        return items

    async def scenario():
        batcher = MicroBatcher(score, max_batch=4, max_wait_s=0, max_queue=100)
        batcher.start()
        await asyncio.gather(batcher.submit(list("abcdef")), batcher.submit(list("gh")), batcher.submit(list("ij")),
                             batcher.submit(list("k")))
        await batcher.close()

    asyncio.run(scenario())
    assert calls == [6, 4, 1]  # the large request alone, then whole requests up to 4 items


def test_the_batcher_refuses_what_would_pass_the_queue_bound_until_it_drains():
    release = threading.Event()

    def score(items):
        release.wait(WAIT_S)
        return items

    async def scenario():
        batcher = MicroBatcher(score, max_batch=2, max_wait_s=0, max_queue=3)
        batcher.start()
        in_model = asyncio.create_task(batcher.submit(["first"]))
        while batcher.stats.requests < 1 or batcher.queued:  # taken off the queue into the model call
            await asyncio.sleep(0.001)
        waiting = asyncio.create_task(batcher.submit(["x", "y", "z"]))
        while batcher.queued < 3:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFull, match="3 texts are waiting for the model and the limit is 3"):
            await batcher.submit(["w"])
        release.set()
        assert await in_model == ["first"]
        assert await waiting == ["x", "y", "z"]  # more than max_batch: alone, and scored
        assert await batcher.submit(["w"]) == ["w"]
        await batcher.close()
        return batcher.stats

    assert asyncio.run(scenario()).model_calls == 3


def test_a_failing_call_is_retried_request_by_request_so_only_the_breaking_one_fails():
    calls = []

    def score(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("cannot score 'bad'")
        return items

    async def scenario():
        batcher = MicroBatcher(score, max_batch=4, max_wait_s=60, max_queue=10)
        batcher.start()
        # the three requests fill the batch (4 items), so nobody waits the 60 s
        results = await asyncio.gather(batcher.submit(["good", "fine"]), batcher.submit(["bad"]),
                                       batcher.submit(["also good"]), return_exceptions=True)
        await batcher.close()
        return results, batcher.stats

    (good, bad, also_good), stats = asyncio.run(scenario())
    assert good == ["good", "fine"] and also_good == ["also good"]
    assert isinstance(bad, ValueError) and "cannot score" in str(bad)
    assert stats.failed_calls == 2 and stats.model_calls == 2
    assert calls[0] == ["bad", "good", "fine", "also good"] and len(calls) == 4


def test_closing_the_batcher_scores_what_is_queued_first():
    async def scenario():
        batcher = MicroBatcher(lambda items: items, max_batch=100, max_wait_s=3600, max_queue=100)
        batcher.start()
        waiting = asyncio.create_task(batcher.submit(["queued"]))
        while not batcher.queued:
            await asyncio.sleep(0.001)
        await batcher.close()  # without waiting the hour for more requests
        return await waiting

    assert asyncio.run(scenario()) == ["queued"]


# -- the command ---------------------------------------------------------------------------------
class ServeProcess:
    """`nlpft serve ARGS --port 0` in a subprocess; its stdout lines collected as they come."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "nlpft", "serve", *args, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout], daemon=True).start()
        threading.Thread(target=lambda: self.stderr.append(self.proc.stderr.read()), daemon=True).start()

    def ready_lines(self, count: int = 1) -> list[str]:
        found = []
        deadline = time.monotonic() + WAIT_S
        while len(found) < count:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"not ready (exit code {self.proc.poll()}):\n{''.join(self.stderr)[-3000:]}")
                continue
            if line.startswith("serving "):
                found.append(line.strip())
        return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def url_of(ready_line: str) -> str:
    return re.search(r"on (http://\S+)", ready_line).group(1)


def test_sigterm_answers_the_request_in_flight_then_exits_0(tfidf_model):
    server = ServeProcess("--model", str(tfidf_model), "--max-wait-ms", "4000")
    (line,) = server.ready_lines()
    assert line.startswith(f"serving {tfidf_model} (single, tfidf) on http://127.0.0.1:")  # loopback by default
    url = url_of(line)
    with httpx.Client(base_url=url, timeout=WAIT_S) as client:
        in_flight, answer = post_in_background(client, GOOD)  # held up to 4 s for company
        wait_until(lambda: httpx.get(url + "/model").json()["batching"]["queued"] == 2, "queued request")
        server.proc.send_signal(signal.SIGTERM)
        assert in_flight.is_alive(), "the request was answered before the signal: the test proves nothing"
        in_flight.join(WAIT_S)
    assert answer and answer[0].status_code == 200 and len(answer[0].json()["predictions"]) == 2
    assert server.proc.wait(WAIT_S) == 0, "".join(server.stderr)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health")


def test_two_workers_each_load_the_model_and_stop_together(tfidf_model):
    server = ServeProcess("--model", str(tfidf_model), "--workers", "2", "--threads", "1")
    lines = server.ready_lines(2)
    workers = {re.search(r"\[worker (\d+)\]", line).group(1) for line in lines}
    assert len(workers) == 2 and len({url_of(line) for line in lines}) == 1
    answer = httpx.post(url_of(lines[0]) + "/predict", json=GOOD, timeout=WAIT_S)
    assert answer.status_code == 200 and [p["label"] for p in answer.json()["predictions"]] == ["pos", "neg"]
    assert server.stop() == 0, "".join(server.stderr)


def test_help_is_instant_and_loads_no_server_library():
    script = ("import sys\nfrom nlpft.cli.main import main\ncode = main(['serve', '--help'])\n"
              "print(code, sorted(m for m in ('fastapi', 'uvicorn', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT_S,
                          check=False)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr
    assert "--max-batch" in done.stdout and "--workers" in done.stdout


def test_without_the_serve_extra_the_command_names_it(monkeypatch, capsys, tfidf_model):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed: importing it fails
    assert main(["serve", "--model", str(tfidf_model)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {MISSING_EXTRA}"


def test_bad_options_a_bad_model_directory_and_a_busy_port_stop_before_serving(tfidf_model, tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "no finetune.json here" in capsys.readouterr().err
    assert main(["serve", "--model", str(tfidf_model), "--max-texts", "2000"]) == 2
    assert "--max-queue 1024 is below --max-texts 2000" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        config = tmp_path / "serve.yaml"
        config.write_text(f"model: {tfidf_model}\nport: {port}\n", encoding="utf-8")
        assert main(["serve", "--config", str(config)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: --port {port}: the port is in use") and len(error.splitlines()) == 1


def test_a_model_whose_weights_cannot_load_stops_the_server(tfidf_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tfidf_model, broken)
    (broken / "tfidf.safetensors").write_bytes(b"not safetensors")
    code = main(["serve", "--model", str(broken), "--port", "0"])
    assert code in (1, 2)
    assert "serving" not in capsys.readouterr().out
