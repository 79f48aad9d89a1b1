"""`nlpft serve`: a fine-tuned model (the --out directory of `nlpft finetune`) behind HTTP.

check the options -> the serve extra is installed -> the model directory loads (finetune.json,
task, backbone: a bad directory stops here, exit 2) -> the port is bound (in use: exit 2) ->
uvicorn runs the app of `nlpft.serving.app` (the weights load in the background; /health
says when they are ready) until SIGTERM or Ctrl-C, which stop it gracefully: no new
connections, the requests in flight answered, the queue scored, exit 0.

--workers N runs N uvicorn worker processes on the port, each building the app from
$NLPFT_SERVE_SETTINGS (`app_from_environment`). A model whose weights fail to load stops
the server with that error: exit 2 for bad input, 1 otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import socket
import tempfile
import threading
from pathlib import Path

from nlpft.errors import UserInputError
from nlpft.finetune.options import ServeOptions

MISSING_EXTRA = "nlpft serve needs the serve extra: pip install 'nlpft[serve]'"
APP_FACTORY = "nlpft.serving.app:app_from_environment"


def serve(opts: ServeOptions) -> None:
    """Serve `opts.model` until a stop signal; raises UserInputError for bad input, and the
    model's loading error if its weights cannot be loaded."""
    from nlpft.finetune.inference import load_for_inference

    opts.validate()
    require_serve_extra()
    loaded = load_for_inference(opts.model, runtime=opts.runtime, precision=opts.precision,
                                threads=opts.threads)
    listener = listening_socket(opts.host, opts.port)
    url = f"http://{_host_in_url(opts.host)}:{listener.getsockname()[1]}"
    with _stop_signals_end_quietly():
        if opts.workers == 1:
            _serve_here(opts, loaded, listener, url)
        else:
            listener.close()  # uvicorn binds the port again for its workers (with SO_REUSEADDR)
            _serve_in_workers(dataclasses.replace(opts, port=int(url.rsplit(":", 1)[1])), url)


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserInputError(MISSING_EXTRA) from None


def uvicorn_settings(opts: ServeOptions) -> dict:
    """uvicorn's settings (`uvicorn.Config` keywords) for `opts`."""
    return {"host": opts.host, "port": opts.port, "workers": opts.workers, "limit_concurrency": opts.max_connections,
            "access_log": False, "log_level": "info", "lifespan": "on"}


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); a port in use or an address this machine does
    not have is a UserInputError naming it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UserInputError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserInputError(f"--port {port}: the port is in use on {host}; stop what listens there or pass "
                                 "another --port (0 picks a free one)") from None
        raise UserInputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    listener.set_inheritable(True)
    return listener


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _serve_here(opts: ServeOptions, loaded, listener: socket.socket, url: str) -> None:
    import uvicorn

    from nlpft.serving.app import create_app

    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def stop(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True

    app = create_app(opts, loaded, url=url, on_load_failure=stop)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_settings(opts)))
    server.run(sockets=[listener])
    if failures:
        raise failures[0]


def _serve_in_workers(opts: ServeOptions, url: str) -> None:
    import uvicorn

    from nlpft.serving.app import SETTINGS_VARIABLE

    descriptor, failure_name = tempfile.mkstemp(prefix="nlpft-serve-", suffix=".json")
    os.close(descriptor)
    failure_file = Path(failure_name)
    settings = {"options": dataclasses.asdict(opts), "url": url, "failure_file": failure_name}
    previous = os.environ.get(SETTINGS_VARIABLE)
    os.environ[SETTINGS_VARIABLE] = json.dumps(settings)  # the workers inherit it
    try:
        uvicorn.run(APP_FACTORY, factory=True, **uvicorn_settings(opts))
        failure = failure_file.read_text(encoding="utf-8")
    finally:
        if previous is None:
            os.environ.pop(SETTINGS_VARIABLE, None)
        else:
            os.environ[SETTINGS_VARIABLE] = previous
        failure_file.unlink(missing_ok=True)
    if failure:
        report = json.loads(failure)
        message = f"{opts.model}: a worker could not load the model: {report['error']}"
        raise (UserInputError if report["user_error"] else RuntimeError)(message)


@contextlib.contextmanager
def _stop_signals_end_quietly():
    """uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the
    handler it found: this one ignores it, so a stopped server ends with exit code 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
