"""`nlpft serve`: a fine-tuned model behind HTTP (FastAPI on uvicorn, the `serve` extra)."""

from __future__ import annotations

import argparse

from nlpft.cli.main import add_config_option
from nlpft.cli.options import UNGROUPED, add_options, from_args

DESCRIPTION = """\
Serve a fine-tuned model (the --out directory of `nlpft finetune`: any task, any backbone)
over HTTP until SIGTERM or Ctrl-C, which stop it gracefully (no new connections, requests
in flight answered, exit 0).

  POST /predict  {"texts": ["great film", "dull mess"]} -> {"predictions": [{"label", "scores"}, ...]}
                 {"text": "great film"}                 -> {"prediction": {"label", "scores"}}
                 pair models also take "text_pairs" (or "text_pair"); tagging models answer
                 "words" and "entities" too, as nlpft.load(DIR).predict does
  GET  /health   503 {"status": "loading"} until the model answered a first text, then 200
  GET  /model    task, backbone, labels, the test metrics of training, limits, batching counts
  GET  /docs     the OpenAPI documentation

Concurrent requests are scored together (micro-batching, off the event loop). Requests
over a limit get a JSON error naming the field and the limit ({"error", "field",
"limit"}); a full queue answers 503 with Retry-After. It listens on 127.0.0.1 unless
--host says otherwise, and prints one line once the model is ready.
"""

EPILOG = """\
examples:
  nlpft serve --model runs/clf --port 8000
  curl -s localhost:8000/predict -d '{"texts": ["great film", "dull mess"]}'
  nlpft serve --model runs/clf --workers 2 --threads 1
  nlpft serve --model runs/clf --max-batch 1        # micro-batching off: one request per model call
"""


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.finetune.options import BATCHING, LIMITS, SERVER, ServeOptions

    p = commands.add_parser("serve", help="serve a fine-tuned model over HTTP", description=DESCRIPTION,
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, ServeOptions, groups=(UNGROUPED, SERVER, BATCHING, LIMITS))
    add_config_option(p)
    p.set_defaults(_handler=run_serve, _parser=p)


def run_serve(args: argparse.Namespace) -> int:
    from nlpft.finetune.options import ServeOptions
    from nlpft.runners.serve import serve

    serve(from_args(ServeOptions, args))
    return 0
