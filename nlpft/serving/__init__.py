"""`nlpft serve`: a fine-tuned model behind HTTP.

`batcher` (the micro-batching queue: pure asyncio and one model thread, no HTTP) and `app`
(the FastAPI app: endpoints, request checks and limits, JSON errors, the model's loading).
The runner `nlpft.runners.serve` checks the options, binds the port and runs uvicorn.
FastAPI and uvicorn come with the `serve` extra; only `app` imports FastAPI.
"""
