"""The FastAPI app of `nlpft serve`: a fine-tuned model (any task, any backbone) behind HTTP.

    POST /predict   {"texts": [...], "text_pairs": [...]?} -> {"predictions": [...]}
                    {"text": "...", "text_pair": "..."?}    -> {"prediction": {...}}
    GET  /health    200 {"status": "ready", ...} once the model answered a first text, else 503
    GET  /model     task, backbone, labels, the test metrics of training, limits, batching counts
    GET  /docs      the OpenAPI documentation (/openapi.json)

A prediction is what `nlpft.load(DIR).predict` gives (the task's `prediction`: label and
scores; for tagging also the words and entities), as JSON. The body is read as JSON
whatever its Content-Type says (`curl -d` sends form encoding), counted while it streams
in, so an oversized body is refused unread. Every refusal is JSON: {"error": what is wrong
and what to do, "field": the field at fault, "limit": the limit passed} (the keys that
apply): 400 for a body that is not JSON, 422 for wrong types, empty or inconsistent fields,
413 for a limit passed, 503 (with Retry-After) while loading or when the queue is full.

The model loads in the background on the batcher's model thread, warmed by one real
prediction; /health says "loading" until then. Requests are scored in micro-batches
(`nlpft.serving.batcher`), off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nlpft.errors import UserInputError
from nlpft.finetune.inference import load_for_inference, rows_from_texts
from nlpft.finetune.options import ServeOptions
from nlpft.serving.batcher import Closed, MicroBatcher, QueueFull
from nlpft.version import __version__

# what the runner hands each uvicorn worker process (--workers N): JSON of
# {"options": ServeOptions fields, "url": ..., "failure_file": ...}
SETTINGS_VARIABLE = "NLPFT_SERVE_SETTINGS"
WARM_UP_TEXT = "warm-up"
RETRY_AFTER_S = 1

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: configured with the server


class PredictRequest(BaseModel):
    """One text (`text`, and `text_pair` for a model trained on pairs) or several (`texts`,
    and `text_pairs`, one per text)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = Field(None, description="one text; the answer is {\"prediction\": {...}}")
    text_pair: str | None = Field(None, description="the second text of `text`, for a model trained on pairs")
    texts: list[str] | None = Field(None, description="several texts; the answer is {\"predictions\": [...]}, "
                                                      "in the same order")
    text_pairs: list[str] | None = Field(None, description="the second text of each of `texts`, for a model "
                                                           "trained on pairs")


class Prediction(BaseModel):
    label: object = Field(description="single-label: the label; multi-label: a list of labels; regression: the "
                                      "number; tagging: one tag per word")
    scores: object = Field(description="classification: {label: probability}; tagging: each word's tag "
                                       "probability; regression: {}")
    words: list[str] | None = Field(None, description="tagging: the words tagged")
    entities: list[dict] | None = Field(None, description="tagging: [{type, text, start, end, score}]")


class PredictResponse(BaseModel):
    prediction: Prediction | None = Field(None, description="for a request with `text`")
    predictions: list[Prediction] | None = Field(None, description="for a request with `texts`")


class Refusal(BaseModel):
    error: str
    field: str | None = None
    limit: int | None = None


class Refused(Exception):
    """A request answered with an error: the JSON body names the field and the limit."""

    def __init__(self, status: int, error: str, field: str | None = None, limit: int | None = None,
                 retry_after: int | None = None):
        super().__init__(error)
        self.status, self.error, self.field, self.limit, self.retry_after = status, error, field, limit, retry_after

    def response(self) -> JSONResponse:
        body = {"error": self.error, **({"field": self.field} if self.field is not None else {}),
                **({"limit": self.limit} if self.limit is not None else {})}
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return SafeJSONResponse(body, status_code=self.status, headers=headers)


class SafeJSONResponse(JSONResponse):
    """JSON with numpy scalars and arrays as plain numbers and lists (a plug-in task's
    prediction may hold them)."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=_plain).encode("utf-8")


def _plain(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ServedModel:
    """The loaded model, its state (loading, ready, failed) and what the endpoints say of it."""

    def __init__(self, loaded, opts: ServeOptions):
        self.loaded = loaded
        self.opts = opts
        self.status = "loading"
        self.failure: BaseException | None = None
        self.takes_pairs = bool(getattr(loaded.task, "has_pairs", False))

    @property
    def task(self) -> str:
        return self.loaded.task.name

    @property
    def backbone(self) -> str:
        return self.loaded.meta["backbone"]

    def warm_up(self) -> None:
        """Load the weights and score one text (run on the model thread; --threads is applied
        by the loaded model itself, around each call)."""
        self.score(rows_from_texts(self.loaded, [WARM_UP_TEXT], [WARM_UP_TEXT if self.takes_pairs else None]))

    def score(self, rows: list) -> list[dict]:
        """Each row's prediction, as `nlpft.load(DIR).predict` gives it (run on the model thread)."""
        scores, _ = self.loaded.score(rows, batch_size=self.opts.batch_size)
        return [self.loaded.task.prediction(row, row_scores) for row, row_scores in zip(rows, scores, strict=True)]

    def training_metrics(self) -> dict | None:
        """The test-split metrics saved by `nlpft finetune` (metrics.json), if readable."""
        try:
            return json.loads((Path(self.loaded.model_dir) / "metrics.json").read_text(encoding="utf-8")).get("test")
        except (OSError, ValueError, AttributeError):
            return None


def text_length(row) -> int:
    """How long a row is to score: its text and second text, in characters."""
    return len(getattr(row, "text", "") or "") + len(getattr(row, "text_pair", "") or "")


def create_app(opts: ServeOptions, loaded=None, *, url: str = "",
               on_load_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving `opts.model` (`loaded`: its `load_for_inference`, made here if None).
    `url` is printed in the ready line; `on_load_failure(error)` is called if the weights
    fail to load (the runner stops the server), after /health has turned to "failed"."""
    served = ServedModel(loaded if loaded is not None else load_for_inference(
        opts.model, runtime=opts.runtime, precision=opts.precision, threads=opts.threads), opts)
    batcher = MicroBatcher(served.score, max_batch=opts.max_batch, max_wait_s=opts.max_wait_ms / 1000,
                           max_queue=opts.max_queue, length_of=text_length)

    async def load_in_background() -> None:
        try:
            await batcher.call_in_model_thread(served.warm_up)
        except Exception as exc:
            served.status, served.failure = "failed", exc
            log.error("%s: the model could not be loaded: %s", opts.model, exc)
            if on_load_failure is not None:
                on_load_failure(exc)
            return
        served.status = "ready"
        print(ready_line(served, url), flush=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        loading = asyncio.create_task(load_in_background())
        yield
        await loading  # a load under way runs on the model thread: it cannot be interrupted
        await batcher.close()  # what is queued is scored before the process ends

    app = FastAPI(title=f"nlpft: {opts.model}", version=__version__, lifespan=lifespan,
                  default_response_class=SafeJSONResponse,
                  description=f"A fine-tuned nlpft model ({served.task}, {served.backbone}). POST texts to "
                              "/predict; GET /model for its labels and training metrics.")
    _add_error_handlers(app)

    @app.post("/predict", response_model=None, responses={200: {"model": PredictResponse},
                                                           400: {"model": Refusal}, 413: {"model": Refusal},
                                                           422: {"model": Refusal}, 503: {"model": Refusal}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": PredictRequest.model_json_schema(),
                  "example": {"texts": ["great film", "dull mess"]}}}}})
    async def predict(request: Request):
        """Predictions for `text` or `texts` (a JSON body, whatever its Content-Type)."""
        if served.status != "ready":
            raise _not_ready(served)
        body = await read_body(request, opts.max_body_bytes)
        texts, pairs, single = parse_texts(body, opts, served.takes_pairs)
        try:
            rows = await asyncio.to_thread(rows_from_texts, served.loaded, texts, pairs, True)
        except UserInputError as exc:
            raise _refused_text(exc, single) from None
        try:
            predictions = await batcher.submit(rows)
        except QueueFull as exc:
            raise Refused(503, f"the server is busy: {exc} (--max-queue); retry in {RETRY_AFTER_S} s",
                          limit=exc.limit, retry_after=RETRY_AFTER_S) from None
        except Closed as exc:
            raise Refused(503, f"{exc}; retry on another server", retry_after=RETRY_AFTER_S) from None
        except Exception as exc:
            log.exception("the model failed on a request's texts")
            raise Refused(500, f"the model failed on these texts ({type(exc).__name__}: {exc}); the server "
                               "keeps serving") from None
        return {"prediction": predictions[0]} if single else {"predictions": predictions}

    @app.get("/health", responses={503: {"description": "loading, or failed to load"}})
    async def health():
        """200 once the model is loaded and answered a first text; 503 until then."""
        state = {"status": served.status, "pid": os.getpid()}
        if served.status == "ready":
            return {**state, "model": opts.model, "task": served.task, "backbone": served.backbone}
        if served.failure is not None:
            state["error"] = str(served.failure)
        return SafeJSONResponse(state, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.get("/model")
    async def model():
        """The model (task, backbone, labels, the test metrics of training), the limits and
        the micro-batching so far."""
        stats = dataclasses.asdict(batcher.stats)
        return {"model": opts.model, "status": served.status, "task": served.task, "backbone": served.backbone,
                "runtime": served.loaded.runtime, "precision": served.loaded.precision,
                "labels": served.loaded.task.label_names, "text_pairs": served.takes_pairs,
                "max_length": served.loaded.meta.get("max_length"), "metrics": served.training_metrics(),
                "limits": {name: getattr(opts, name) for name in
                           ("max_body_bytes", "max_texts", "max_chars", "max_queue", "max_connections")},
                "batching": {"max_batch": opts.max_batch, "max_wait_ms": opts.max_wait_ms,
                             "batch_size": opts.batch_size, "queued": batcher.queued, **stats}}

    return app


def ready_line(served: ServedModel, url: str) -> str:
    how = {"onnx": ", ONNX Runtime"}.get(served.loaded.runtime, ", bf16" if served.loaded.precision == "bf16" else "")
    line = f"serving {served.opts.model} ({served.task}, {served.backbone}{how}) on {url}  (docs: /docs)"
    return line + (f"  [worker {os.getpid()}]" if served.opts.workers > 1 else "")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass `limit` bytes: by its
    Content-Length before a byte is read, else while it streams in."""
    def too_large(size: str) -> Refused:
        return Refused(413, f"the body is {size} bytes, over the limit of {limit:,} (--max-body-bytes); send fewer "
                            "or shorter texts per request", field="body", limit=limit)

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"{int(declared):,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"over {limit:,}")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_texts(body: bytes, opts: ServeOptions, takes_pairs: bool) -> tuple[list[str], list[str | None], bool]:
    """(texts, their second texts or Nones, whether one `text` was sent) of a /predict body;
    raises Refused naming the field at fault."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
        raise Refused(400, f"the body is not valid JSON ({exc}); send an object such as "
                           '{"texts": ["great film", "dull mess"]}', field="body") from None
    if not isinstance(data, dict):
        raise Refused(422, f"the body is a JSON {_kind(data)}; send an object with \"text\" or \"texts\"",
                      field="body")
    if isinstance(data.get("texts"), list) and len(data["texts"]) > opts.max_texts:  # before checking each
        raise _too_many(len(data["texts"]), opts.max_texts)
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError as exc:
        raise _refused_shape(exc) from None
    single = request.texts is None
    if single == (request.text is None):
        raise Refused(422, 'send either "text" (one text) or "texts" (a list of texts), not '
                           + ("both" if request.text is not None else "neither"), field="texts")
    for field, wrong in (("text_pair", not single), ("text_pairs", single)):
        if getattr(request, field) is not None and wrong:
            right = "text_pairs goes with texts" if field == "text_pair" else "text_pair goes with text"
            raise Refused(422, f"{field} does not go with {'texts' if field == 'text_pair' else 'text'}: {right}",
                          field=field)
    texts = [request.text] if single else request.texts
    pairs = request.text_pairs if not single else None if request.text_pair is None else [request.text_pair]
    if not texts:
        raise Refused(422, "texts is empty; send at least one text", field="texts")
    pairs_field = "text_pair" if single else "text_pairs"
    if pairs is not None and len(pairs) != len(texts):
        raise Refused(422, f"text_pairs has {len(pairs)} texts for {len(texts)} texts; send one per text",
                      field="text_pairs")
    if takes_pairs and pairs is None:
        raise Refused(422, f"this model was trained on text pairs: send {pairs_field} with the "
                           f"{'text' if single else 'texts'}", field=pairs_field)
    if not takes_pairs and pairs is not None:
        raise Refused(422, f"this model reads single texts: drop {pairs_field}", field=pairs_field)
    pairs = pairs if pairs is not None else [None] * len(texts)
    for field, values in (("text" if single else "texts", texts), (pairs_field, pairs)):
        for position, value in enumerate(values):
            if value is None:
                continue
            name = field if single else f"{field}[{position}]"
            if len(value) > opts.max_chars:
                raise Refused(413, f"{name} has {len(value):,} characters, over the limit of {opts.max_chars:,} "
                                   "(--max-chars); split or shorten it", field=name, limit=opts.max_chars)
            if not value.strip():
                raise Refused(422, f"{name} is empty; send text to predict on", field=name)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate (JSON's "\ud800"), which tokenizers refuse
                raise Refused(422, f"{name} is not valid Unicode ({exc.reason} at character {exc.start}); "
                                   "send UTF-8 text", field=name) from None
    return texts, pairs, single


def _too_many(count: int, limit: int) -> Refused:
    return Refused(413, f"texts holds {count:,} texts, over the limit of {limit:,} per request (--max-texts); "
                        "send them in several requests", field="texts", limit=limit)


def _refused_shape(exc: ValidationError) -> Refused:
    """The first problem pydantic found, named by its field (texts[2])."""
    problem = exc.errors()[0]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"]).lstrip(".")
    if problem["type"] == "extra_forbidden":
        return Refused(422, f"unknown field {field!r}; send \"text\" (and \"text_pair\") or \"texts\" (and "
                            "\"text_pairs\")", field=field)
    return Refused(422, f"{field} is {_kind(problem['input'])}: {problem['msg'][0].lower()}{problem['msg'][1:]}",
                   field=field)


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _refused_text(exc: UserInputError, single: bool) -> Refused:
    """A text the model's task refused (e.g. no words to tag), named by its position."""
    message = str(exc)
    position = re.match(r"texts\[(\d+)\]: ", message)
    if position and single:
        message = "text: " + message[position.end():]
    field = "text" if single else (f"texts[{position.group(1)}]" if position else "texts")
    return Refused(422, message, field=field)


def _not_ready(served: ServedModel) -> Refused:
    if served.status == "failed":
        return Refused(503, f"the model could not be loaded: {served.failure}")
    return Refused(503, f"the model is still loading; retry in {RETRY_AFTER_S} s (GET /health says when it is "
                        "ready)", retry_after=RETRY_AFTER_S)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON: {"error": ...} (and "field"/"limit" where they apply)."""
    async def refused(request: Request, exc: Refused):
        return exc.response()

    async def http_error(request: Request, exc: StarletteHTTPException):  # 404, 405, ...
        return SafeJSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def internal(request: Request, exc: Exception):
        return Refused(500, f"internal error: {type(exc).__name__}: {exc} (please report it)").response()

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (--workers N), from the settings the runner
    put in $NLPFT_SERVE_SETTINGS. A worker that cannot load the model records why in the
    failure file and asks the parent to stop (SIGTERM): the runner then reports it."""
    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    failure_file = Path(settings["failure_file"])

    def stop_the_server(exc: BaseException) -> None:
        failure_file.write_text(json.dumps({"error": str(exc), "user_error": isinstance(exc, UserInputError)}),
                                encoding="utf-8")
        os.kill(os.getppid(), signal.SIGTERM)

    try:
        return create_app(ServeOptions(**settings["options"]), url=settings["url"], on_load_failure=stop_the_server)
    except Exception as exc:  # the model directory changed after the runner checked it
        stop_the_server(exc)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
