"""A Hugging Face Hub on 127.0.0.1 for tests: no internet, huggingface_hub's own code unmodified.

`LoopbackHub` serves repos held in memory in the Hub's URL layout, as the installed
huggingface_hub calls it (point it there with `HF_ENDPOINT=hub.url`):

- `GET /api/{models,datasets}/{repo}[/revision/{rev}]`: the listing (`model_info`,
  `dataset_info`, `repo_info`), with sizes, blob ids and LFS data when asked for `blobs`;
- `GET /api/{models,datasets}/{repo}/tree/{rev}[/{path}]` and `POST .../paths-info/{rev}`
  (`list_repo_tree`, `list_repo_files`, `snapshot_download`, `HfFileSystem`);
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}` and `/datasets/{repo}/resolve/...`
  (`hf_hub_download`), with X-Repo-Commit, ETag, Content-Length, X-Linked-Etag and
  X-Linked-Size for LFS files (*.safetensors, *.bin, *.parquet, ...), and byte ranges.

Errors are answered as the Hub answers them, with the `X-Error-Code` header that
huggingface_hub turns into its exception types: a missing repo is 404 `RepoNotFound`, a
gated repo's files 401 `GatedRepo` (its listing stays public, with `gated: "manual"`), an
unknown revision 404 `RevisionNotFound`, a missing file 404 `EntryNotFound`.

Every request is recorded (`requests`, `fetched`), so a test can assert what was and was
not downloaded; `stall` makes the next download of one file stop half way until released.
`HangingServer` accepts connections and never answers.

Fixtures (imported by tests/conftest.py): `loopback_hub` (the server, once a session),
`hub_env` (HF_ENDPOINT at it, an empty cache of the test's own, connections to anything
but 127.0.0.1 refused in-process) and `hanging_hub` (the same, at a `HangingServer`).

`standard_repos` builds the repos the tests share: `tiny-org/tiny-bert` (a random BERT in
safetensors, plus decoys that must never be fetched: pytorch_model.bin, a .py, a .msgpack,
an onnx/ folder), `tiny-org/pickle-only`, `tiny-org/custom-code` (auto_map),
`tiny-org/gated-bert`, and the Parquet dataset `tiny-org/tiny-sentiment` (train and test
splits, columns text and label). Any other id is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

#: files the Hub keeps in LFS: their HEAD answer carries X-Linked-Etag/X-Linked-Size
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pkl", ".h5", ".msgpack", ".onnx", ".parquet", ".gguf")

_LAST_MODIFIED = "2025-01-01T00:00:00.000Z"


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    data: bytes

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer that git stores in place of an LFS file."""
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def blob_id(self) -> str:
        return _git_blob_id(self.pointer if self.is_lfs else self.data)

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": len(self.data), "path": self.path}
        if self.is_lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


@dataclass
class HubRepo:
    repo_id: str
    repo_type: str  # "model" | "dataset"
    files: dict[str, HubFile]
    gated: bool = False
    sha: str = field(init=False)

    def __post_init__(self):
        digest = hashlib.sha1(self.repo_type.encode() + self.repo_id.encode())
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name].data)
        self.sha = digest.hexdigest()

    def folders(self) -> set[str]:
        return {"/".join(name.split("/")[:i]) for name in self.files for i in range(1, name.count("/") + 1)}

    def info(self, with_blobs: bool) -> dict:
        siblings = []
        for file in self.files.values():
            sibling = {"rfilename": file.path}
            if with_blobs:
                sibling.update(size=len(file.data), blobId=file.blob_id)
                if file.is_lfs:
                    sibling["lfs"] = {"size": len(file.data), "sha256": file.sha256, "pointerSize": len(file.pointer)}
            siblings.append(sibling)
        info = {"_id": self.sha[:24], "id": self.repo_id, "author": self.repo_id.split("/")[0], "sha": self.sha,
                "lastModified": _LAST_MODIFIED, "private": False, "disabled": False,
                "gated": "manual" if self.gated else False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings}
        if self.repo_type == "model":
            info.update(modelId=self.repo_id, library_name="transformers", config=self._config_summary())
        else:
            info["cardData"] = {}
        return info

    def _config_summary(self) -> dict:
        """The part of config.json the Hub repeats in a model's listing."""
        if "config.json" not in self.files:
            return {}
        config = json.loads(self.files["config.json"].data)
        return {key: config[key] for key in ("architectures", "model_type", "auto_map") if key in config}


@dataclass
class Stall:
    """A download that stops after `after_bytes` (see `LoopbackHub.stall`)."""

    after_bytes: int
    sent: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class LoopbackHub:
    """A threaded HTTP server on 127.0.0.1 (a free port) that answers like the Hub."""

    def __init__(self):
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without the query)
        self._stalls: dict[tuple[str, str, str], Stall] = {}  # waiting for their GET
        self._every_stall: list[Stall] = []  # released on close, taken or not
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        self._thread.start()
        return self

    def close(self) -> None:
        for stall in self._every_stall:
            stall.release.set()
        self._server.shutdown()
        self._server.server_close()

    # -- content ------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes] | Path, repo_type: str = "model",
                 gated: bool = False) -> HubRepo:
        """Serve `files` ({path in repo: bytes}, or every file under a folder) as `repo_id`."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = HubRepo(repo_id, repo_type, {name: HubFile(name, data) for name, data in files.items()}, gated)
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def stall(self, repo_id: str, filename: str, after_bytes: int, repo_type: str = "model") -> Stall:
        """The next GET of `filename` sends its first `after_bytes` bytes (then `stall.sent` is
        set), waits until `stall.release` is set (or the server closes) and drops the connection."""
        stall = Stall(after_bytes)
        self._stalls[(repo_type, repo_id, filename)] = stall
        self._every_stall.append(stall)
        return stall

    # -- what was asked -----------------------------------------------------------------
    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def fetched(self, repo: str | None = None) -> list[str]:
        """The paths in their repos of the files requested through /resolve/ (HEAD or GET), of
        every repo or of `repo` (an id such as tiny-org/tiny-bert, model or dataset)."""
        with self._lock:
            requested = [path for _, path in self.requests if "/resolve/" in path]
        found = []
        for path in requested:
            repo_part, rest = path.split("/resolve/", 1)
            if repo is None or unquote(repo_part.removeprefix("/datasets")).strip("/") == repo:
                found.append(unquote(rest.split("/", 1)[1]))
        return found

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def take_stall(self, repo: HubRepo, filename: str) -> Stall | None:
        return self._stalls.pop((repo.repo_type, repo.repo_id, filename), None)


_API = re.compile(r"^/api/(?P<type>models|datasets)/(?P<rest>.+)$")
_RESOLVE = re.compile(r"^/(?:(?P<datasets>datasets)/)?(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1"

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub

    def log_message(self, format, *args):  # quiet: the tests read `requests` instead
        pass

    def do_HEAD(self):
        self._route(body=False)

    def do_GET(self):
        self._route(body=True)

    def do_POST(self):
        self._route(body=True)

    # -- routing ------------------------------------------------------------------------
    def _route(self, body: bool) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        self.hub.record(self.command, path)
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            query.update(parse_qs(self.rfile.read(length).decode()))
        if (match := _API.match(path)) is not None:
            self._api("model" if match["type"] == "models" else "dataset", unquote(match["rest"]), query, body)
        elif (match := _RESOLVE.match(path)) is not None:
            self._resolve("dataset" if match["datasets"] else "model", unquote(match["repo"]), unquote(match["rev"]),
                          unquote(match["file"]), body)
        else:
            self._error(404, "EntryNotFound", f"no route for {path}", body)

    def _find_repo(self, repo_type: str, rest: str) -> tuple[HubRepo | None, str]:
        """The repo whose id starts `rest` (and what follows it), or None and the id it names."""
        for (kind, repo_id), repo in self.hub.repos.items():
            if kind == repo_type and (rest == repo_id or rest.startswith(repo_id + "/")):
                return repo, rest[len(repo_id):]
        return None, "/".join(rest.split("/")[:2])

    def _api(self, repo_type: str, rest: str, query: dict, body: bool) -> None:
        repo, tail = self._find_repo(repo_type, rest)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", body)
        verb, _, arguments = tail.lstrip("/").partition("/")
        if verb in ("", "revision"):
            revision = arguments or "main"
            if self._revision_ok(repo, revision, body):
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                self._json(repo.info(with_blobs=blobs), body)
        elif verb == "tree":
            revision, _, folder = arguments.partition("/")
            if self._revision_ok(repo, revision, body):
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                self._json(self._tree(repo, folder.strip("/"), recursive), body)
        elif verb == "paths-info" and self.command == "POST":
            if self._revision_ok(repo, arguments, body):
                wanted = query.get("paths", [])
                entries = [repo.files[p].tree_entry() for p in wanted if p in repo.files]
                entries += [{"type": "directory", "oid": _git_blob_id(p.encode()), "path": p}
                            for p in wanted if p in repo.folders()]
                self._json(entries, body)
        else:
            self._error(404, "EntryNotFound", f"unknown API path {tail}", body)

    @staticmethod
    def _tree(repo: HubRepo, folder: str, recursive: bool) -> list[dict]:
        prefix = folder + "/" if folder else ""

        def listed(path: str) -> bool:
            return path.startswith(prefix) and (recursive or "/" not in path[len(prefix):])

        folders = [{"type": "directory", "oid": _git_blob_id(p.encode()), "size": 0, "path": p}
                   for p in sorted(repo.folders()) if listed(p)]
        return folders + [file.tree_entry() for name, file in sorted(repo.files.items()) if listed(name)]

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str, body: bool) -> None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", body)
        if repo.gated:
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to "
                                                 "it and be authenticated to access it. Please log in.", body)
        if not self._revision_ok(repo, revision, body):
            return
        file = repo.files.get(filename)
        if file is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"", body,
                               {"X-Repo-Commit": repo.sha})
        start = self._range_start(len(file.data))
        data = file.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(file.data) - 1}/{len(file.data)}")
        self.send_header("X-Repo-Commit", repo.sha)
        self.send_header("ETag", f'"{file.blob_id}"')
        if file.is_lfs:
            self.send_header("X-Linked-Etag", f'"{file.sha256}"')
            self.send_header("X-Linked-Size", str(len(file.data)))
        self.end_headers()
        if not body:
            return
        stall = self.hub.take_stall(repo, filename) if self.command == "GET" else None
        if stall is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:stall.after_bytes])
        self.wfile.flush()
        stall.sent.set()
        stall.release.wait(timeout=120)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _range_start(self, size: int) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        return min(int(match[1]), size) if match else 0

    def _revision_ok(self, repo: HubRepo, revision: str, body: bool) -> bool:
        if revision in ("main", repo.sha):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        return False

    # -- answers ------------------------------------------------------------------------
    def _json(self, data, body: bool) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _error(self, status: int, code: str, message: str, body: bool, headers: dict | None = None) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)


class HangingServer:
    """A socket on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> HangingServer:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.connections:
            connection.close()
        self._socket.close()


# -- the shared repos ------------------------------------------------------------------------

SENTIMENT = [("a wonderful film with great acting", 1), ("a dull film with a boring plot", 0),
             ("great music and a lovely story", 1), ("the plot was bad and the acting worse", 0),
             ("i loved every minute of it", 1), ("i want those two hours back", 0)]


def tiny_bert_files(folder: Path) -> Path:
    """A random BERT (hidden size 32, 2 layers) with a WordPiece tokenizer, saved in `folder`."""
    from nlpft.tokenization.subword import train_subword_tokenizer
    from tests.conftest import save_tiny_bert

    lines = [text for text, _ in SENTIMENT] * 20
    tokenizer = train_subword_tokenizer(lines, "wordpiece", 120, model_max_length=64)
    return save_tiny_bert(folder, tokenizer, hidden_size=32, layers=2, heads=2)


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def sentiment_parquet(rows: list[tuple[str, int]]) -> bytes:
    """A Parquet file with columns text (string) and label (int64), with the features
    metadata the `datasets` library writes (label is a ClassLabel neg/pos)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    features = {"text": {"dtype": "string", "_type": "Value"},
                "label": {"names": ["neg", "pos"], "_type": "ClassLabel"}}
    table = pa.table({"text": [text for text, _ in rows], "label": [label for _, label in rows]},
                     schema=pa.schema([("text", pa.string()), ("label", pa.int64())],
                                      metadata={"huggingface": json.dumps({"info": {"features": features}})}))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


SENTIMENT_CARD = """\
---
dataset_info:
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# tiny-sentiment

Short film reviews labelled neg (0) or pos (1), for tests.
"""


def standard_repos(hub: LoopbackHub, work: Path) -> LoopbackHub:
    """Add the repos listed in this module's docstring to `hub` (model files built under `work`)."""
    bert = _folder_files(tiny_bert_files(work / "tiny-bert"))
    decoys = {"pytorch_model.bin": b"a pickle nlpft must never fetch", "flax_model.msgpack": b"flax weights",
              "handler.py": b"raise SystemExit('checkpoint code ran')\n", "onnx/model.onnx": b"onnx weights"}
    hub.add_repo("tiny-org/tiny-bert", {**bert, **decoys})
    hub.add_repo("tiny-org/gated-bert", bert, gated=True)
    config = json.loads(bert["config.json"])
    hub.add_repo("tiny-org/pickle-only", {"config.json": bert["config.json"], "vocab.txt": bert.get("vocab.txt", b""),
                                          "tokenizer.json": bert["tokenizer.json"],
                                          "pytorch_model.bin": b"a pickle nlpft must never fetch"})
    custom = {**config, "auto_map": {"AutoModel": "modeling_custom.CustomModel"}}
    hub.add_repo("tiny-org/custom-code", {**bert, "config.json": json.dumps(custom).encode(),
                                          "modeling_custom.py": b"raise SystemExit('checkpoint code ran')\n"})
    rows = SENTIMENT * 8
    hub.add_repo("tiny-org/tiny-sentiment", {
        "README.md": SENTIMENT_CARD.encode(),
        "data/train-00000-of-00001.parquet": sentiment_parquet(rows[:40]),
        "data/test-00000-of-00001.parquet": sentiment_parquet(rows[40:]),
    }, repo_type="dataset")
    return hub


# -- fixtures (imported by tests/conftest.py) ----------------------------------------------------
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class HubEnvironment:
    """Where a test's Hugging Face settings point: `hub` (None for the hanging server), its
    `url`, and the test's own `cache`. The environment (HF_ENDPOINT, HF_HOME, HF_HUB_CACHE)
    is set for subprocesses too."""

    url: str
    cache: Path
    hub: LoopbackHub | None = None


def point_hugging_face_at(url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point huggingface_hub (in this process and in subprocesses) at `url`, with an empty
    cache under `home`, the network allowed; and refuse any connection from this process to
    an address other than 127.0.0.1. Returns the cache folder."""
    from huggingface_hub import constants

    cache = home / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    # what huggingface_hub read at import, for code that takes its defaults (transformers, the cache
    # helpers, the token file: the user's own token is neither read nor sent)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    _refuse_other_addresses(monkeypatch)
    return cache


def _refuse_other_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    original_getaddrinfo, original_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise OSError(f"the test refuses to look up {host}: only 127.0.0.1 may be contacted")
        return original_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError(f"the test refuses a connection to {address[0]}: only 127.0.0.1 may be contacted")
        return original_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


def forget_resolved_hub_ids() -> None:
    """Drop nlpft's per-process memory of resolved hub ids (as a new process starts)."""
    from nlpft.pretrained.loading import hub

    hub._snapshots.clear()


@pytest.fixture(scope="session")
def loopback_hub(tmp_path_factory) -> Iterator[LoopbackHub]:
    """The running loopback Hub with `standard_repos`, shared by the session."""
    hub = standard_repos(LoopbackHub(), tmp_path_factory.mktemp("hub-repos")).start()
    yield hub
    hub.close()


@pytest.fixture
def hub_env(loopback_hub, tmp_path, monkeypatch) -> Iterator[HubEnvironment]:
    """Hugging Face pointed at the loopback Hub, with an empty cache of the test's own; the
    request log starts empty."""
    cache = point_hugging_face_at(loopback_hub.url, tmp_path / "hf-home", monkeypatch)
    loopback_hub.clear()
    forget_resolved_hub_ids()
    yield HubEnvironment(url=loopback_hub.url, cache=cache, hub=loopback_hub)
    forget_resolved_hub_ids()


@pytest.fixture
def hanging_hub(tmp_path, monkeypatch) -> Iterator[tuple[HubEnvironment, HangingServer]]:
    """Hugging Face pointed at a server that accepts connections and never answers."""
    server = HangingServer().start()
    cache = point_hugging_face_at(server.url, tmp_path / "hf-home", monkeypatch)
    forget_resolved_hub_ids()
    yield HubEnvironment(url=server.url, cache=cache), server
    server.close()
    forget_resolved_hub_ids()


def subprocess_env(**changes: str | None) -> dict[str, str]:
    """This process's environment (as the fixtures set it) with `changes` (None removes a name)."""
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
