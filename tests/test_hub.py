"""Hub ids against a Hugging Face Hub on 127.0.0.1 (tests/hub_server.py): a hub id downloads
by default (configs, tokenizer files and safetensors only), the cache serves later runs,
HF_HUB_OFFLINE/--offline forbid the network, every refusal is one line naming the repo and
the fix, an unreachable Hub fails within 10 s, `models list` shows sizes, and an
interrupted download is never trusted."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlpft.cli.main import main
from nlpft.errors import UserInputError
from nlpft.pretrained import aliases, loading
from tests.conftest import Run
from tests.hub_server import (
    SENTIMENT,
    HangingServer,
    forget_resolved_hub_ids,
    subprocess_env,
)

TINY = "tiny-org/tiny-bert"
#: what no download may ever fetch: code, pickles, other frameworks' weights (the repo has decoys of each)
NEVER_FETCHED = (".py", ".bin", ".pkl", ".pt", ".msgpack", ".h5", ".onnx")


def safe_files(hub, repo_id: str = TINY) -> list[str]:
    """The files of `repo_id` that nlpft should download: the top folder's, without the decoys."""
    return sorted(name for name in hub.repos[("model", repo_id)].files
                  if "/" not in name and not name.endswith(NEVER_FETCHED))


def unsafe_fetches(hub, repo: str | None = None) -> list[str]:
    return [name for name in hub.fetched(repo) if name.endswith(NEVER_FETCHED) or "/" in name]


def error_line(stderr: str) -> str:
    """The command's error: exactly one line starting with "error:", and no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def nlpft(*args: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlpft", *args], capture_output=True, text=True, timeout=600,
                          env=subprocess_env(**env_changes), check=False)


# -- downloads, and the cache -----------------------------------------------------------------

def test_a_hub_id_downloads_by_default_only_configs_tokenizer_and_safetensors(hub_env, capsys):
    hub = hub_env.hub
    resolved = loading.resolve_model(TINY)
    commit = hub.repos[("model", TINY)].sha
    assert resolved.source == "hub" and resolved.hub_id == TINY
    assert resolved.path == (hub_env.cache / "models--tiny-org--tiny-bert" / "snapshots" / commit).resolve()
    assert sorted(p.name for p in resolved.path.iterdir()) == safe_files(hub)
    assert "model.safetensors" in hub.fetched() and unsafe_fetches(hub) == []
    assert f"downloading {TINY} from {hub_env.url}: {len(safe_files(hub))} files" in capsys.readouterr().err
    assert loading.load_model(TINY, quiet=True).config.hidden_size == 32

    hub.clear()  # the same process asks the Hub once per id
    assert loading.resolve_model(TINY).path == resolved.path and hub.requests == []
    forget_resolved_hub_ids()  # a new process: one listing, no file fetched again
    assert loading.resolve_model(TINY).path == resolved.path
    assert hub.requests == [("GET", f"/api/models/{TINY}")]


def test_offline_loads_from_the_cache_and_never_contacts_the_hub(hub_env, monkeypatch):
    hub = hub_env.hub
    downloaded = loading.resolve_model(TINY).path
    hub.clear()
    forget_resolved_hub_ids()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.resolve_model(TINY).path == downloaded
    with pytest.raises(UserInputError) as info:
        loading.resolve_model("tiny-org/gated-bert")
    message = str(info.value)
    assert "\n" not in message and message.startswith("tiny-org/gated-bert: ")
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE=1 or --offline" in message
    assert hub.requests == []


@pytest.fixture
def small_inputs(tmp_path) -> dict[str, Path]:
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(text for text, _ in SENTIMENT * 5) + "\n", encoding="utf-8")
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((text, "pos" if label else "neg") for text, label in SENTIMENT * 5)
    return {"texts": texts, "train": train}


OFFLINE_COMMANDS = {
    "models info": lambda io, tmp: ["models", "info", TINY],
    "encode": lambda io, tmp: ["encode", "--model", TINY, "--input", str(io["texts"]), "--out", str(tmp / "v.npy")],
    "lm eval": lambda io, tmp: ["lm", "eval", "--model", TINY, "--corpus", str(io["texts"])],
    "lm generate": lambda io, tmp: ["lm", "generate", "--model", TINY, "--prompt", "a film"],
    "finetune": lambda io, tmp: ["finetune", "--model", TINY, "--train", str(io["train"]), "--out", str(tmp / "ft")],
    "pretrain": lambda io, tmp: ["pretrain", "--from", TINY, "--corpus", str(io["texts"]), "--out", str(tmp / "pt")],
}


@pytest.mark.parametrize("command", OFFLINE_COMMANDS)
def test_offline_flag_on_every_command_that_takes_a_model(command, hub_env, small_inputs, tmp_path, capsys):
    assert main([*OFFLINE_COMMANDS[command](small_inputs, tmp_path), "--offline"]) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{TINY}: not a local directory, and not in the Hugging Face cache" in line and "--offline" in line
    assert hub_env.hub.requests == []
    assert "HF_HUB_OFFLINE" not in os.environ  # the flag holds for its command only


@pytest.mark.parametrize("call", ["finetune", "pretrain"])
def test_offline_keyword_of_the_python_api(call, hub_env, small_inputs, tmp_path):
    """offline=True holds for a call as --offline for its command: the Hub is never asked."""
    import nlpft as api

    runs = {"finetune": lambda: api.finetune(model=TINY, train=str(small_inputs["train"]), out=str(tmp_path / "ft"),
                                             offline=True),
            "pretrain": lambda: api.pretrain(from_model=TINY, corpus=str(small_inputs["texts"]),
                                             out=str(tmp_path / "pt"), offline=True)}
    with pytest.raises(UserInputError, match=f"{TINY}: not a local directory, and not in the Hugging Face cache"):
        runs[call]()
    assert hub_env.hub.requests == []
    assert "HF_HUB_OFFLINE" not in os.environ


# -- refusals: one line naming the repo and the fix ------------------------------------------------

def test_a_pickle_only_repo_is_refused_from_its_listing_before_any_download(hub_env, capsys):
    assert main(["models", "info", "tiny-org/pickle-only"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("error: tiny-org/pickle-only: the repo has no safetensors weights, only pytorch_model.bin")
    assert "save_pretrained(DIR)" in line
    assert hub_env.hub.fetched() == []


def test_a_repo_asking_for_its_own_code_is_refused_before_its_weights(hub_env, capsys):
    assert main(["models", "info", "tiny-org/custom-code"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("error: tiny-org/custom-code: config.json: has an auto_map")
    assert "trust_remote_code=False" in line
    fetched = hub_env.hub.fetched()
    assert "config.json" in fetched and not any(name.endswith(".safetensors") for name in fetched)
    assert unsafe_fetches(hub_env.hub) == []
    assert loading.cached_snapshot("tiny-org/custom-code") is None  # its JSON files are not a cached model


def test_a_gated_repo_says_how_to_get_access(hub_env, small_inputs, tmp_path, capsys):
    assert main(["encode", "--model", "tiny-org/gated-bert", "--input", str(small_inputs["texts"]),
                 "--out", str(tmp_path / "v.npy")]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("error: tiny-org/gated-bert: a gated model: accept its conditions at "
                           f"{hub_env.url}/tiny-org/gated-bert")
    assert "hf auth login" in line
    assert not any(name.endswith(".safetensors") for name in hub_env.hub.fetched())


def test_a_missing_repo_says_to_check_the_id(hub_env, capsys):
    assert main(["models", "info", "tiny-org/no-such-model"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("error: tiny-org/no-such-model: not a local directory, and no such model on the "
                           f"Hugging Face Hub ({hub_env.url})")
    assert "check the path or the id" in line
    assert hub_env.hub.fetched() == []


# -- an unreachable Hub ---------------------------------------------------------------------------

def test_an_unreachable_hub_fails_within_10_s_with_one_line(hanging_hub, capsys):
    """The server accepts the connection and never answers: the bound is nlpft's own
    timeout, with no retry loop after it (measured: about HUB_TIMEOUT_S)."""
    environment, server = hanging_hub
    start = time.monotonic()
    code = main(["models", "info", TINY])
    elapsed = time.monotonic() - start
    assert code == 2 and elapsed < 10, elapsed
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {TINY}: not a local directory, and the Hugging Face Hub ({environment.url}) "
                           "gave no answer (ReadTimeout")
    assert f"nlpft waits {loading.HUB_TIMEOUT_S} s at most" in line and "HF_HUB_OFFLINE=1" in line
    assert len(server.connections) == 1


def test_an_unreachable_hub_falls_back_to_the_cache(hub_env, monkeypatch, capsys):
    downloaded = loading.resolve_model(TINY).path
    capsys.readouterr()
    forget_resolved_hub_ids()
    server = HangingServer().start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        start = time.monotonic()
        assert loading.resolve_model(TINY).path == downloaded
        assert time.monotonic() - start < 10
    finally:
        server.close()
    note = capsys.readouterr().err.strip()
    assert note.startswith(f"{TINY}: using the cached copy in ") and "\n" not in note


# -- models list ------------------------------------------------------------------------------------

def test_models_list_shows_the_cache_and_what_a_hub_id_would_download(hub_env, monkeypatch, capsys):
    hub = hub_env.hub
    repo = hub.repos[("model", TINY)]
    monkeypatch.setattr(aliases, "KNOWN_HUB_IDS", {TINY: ("encoder", ()), "tiny-org/pickle-only": ("encoder", ())})
    rows = {row["name"]: row for row in aliases.list_models()}
    wanted = safe_files(hub)
    assert rows[TINY]["available"] is False and rows[TINY]["disk_bytes"] is None
    assert rows[TINY]["download_bytes"] == sum(len(repo.files[name].data) for name in wanted)
    assert rows[TINY]["where"].startswith(f"not cached; first use downloads {len(wanted)} files, ")
    assert "pytorch_model.bin" in rows["tiny-org/pickle-only"]["where"]
    assert hub.fetched() == []  # listings only

    loading.resolve_model(TINY)
    monkeypatch.setattr(aliases, "KNOWN_HUB_IDS", {"tiny-org/gated-bert": ("encoder", ())})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear()
    assert main(["models", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    cached = rows[TINY]  # not a known id: listed because it is in the cache
    assert cached["available"] and cached["kind"] == "hub" and cached["family"] == "encoder"
    assert cached["disk_bytes"] == sum(len(repo.files[name].data) for name in wanted)
    assert rows["tiny-org/gated-bert"]["where"] == "not cached; downloads on first use (size unknown offline)"
    assert hub.requests == []
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "ON DISK" in table.splitlines()[0] and any(line.startswith(TINY) for line in table.splitlines())


# -- interrupted and damaged downloads ------------------------------------------------------------

def test_an_interrupted_download_is_never_trusted_by_a_later_offline_run(hub_env):
    hub = hub_env.hub
    weights = hub.repos[("model", TINY)].files["model.safetensors"]
    stall = hub.stall(TINY, "model.safetensors", after_bytes=len(weights.data) // 2)
    blobs = hub_env.cache / "models--tiny-org--tiny-bert" / "blobs"
    run = Run([sys.executable, "-m", "nlpft", "models", "info", TINY], timeout=300)
    try:
        run.wait_until(lambda: stall.sent.is_set() and any(blobs.glob("*.incomplete")))
        run.signal(signal.SIGKILL)
        code, _ = run.finish()
    finally:
        stall.release.set()
    assert code == -signal.SIGKILL
    offline = nlpft("models", "info", TINY, HF_HUB_OFFLINE="1")
    assert offline.returncode == 2
    assert "not in the Hugging Face cache" in error_line(offline.stderr)
    assert list(blobs.glob("*.incomplete")), "the interrupted file is left where nothing trusts it"
    online = nlpft("models", "info", TINY, "--json")  # a later run with the network finishes the download
    assert online.returncode == 0, online.stderr[-3000:]
    assert json.loads(online.stdout)["parameters"] > 0


def test_a_truncated_weights_file_in_the_cache_is_refused(hub_env, monkeypatch, capsys):
    resolved = loading.resolve_model(TINY)
    blob = (resolved.path / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    forget_resolved_hub_ids()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "info", TINY]) == 2
    line = error_line(capsys.readouterr().err)
    assert "model.safetensors: corrupt or truncated safetensors file" in line and "download" in line


# -- the command, end to end ------------------------------------------------------------------------

def test_finetune_downloads_a_hub_model_and_trains_and_offline_fails_fast(hub_env, tmp_path):
    """The issue's command: a Hub model trained on a Hub dataset, with no environment variable
    set (the loopback Hub stands in for huggingface.co); offline with an empty cache it fails
    fast, with one line."""
    out = tmp_path / "runs" / "x"
    args = ["finetune", "--model", TINY, "--train", "hf:tiny-org/tiny-sentiment", "--method", "standard",
            "--max-steps", "2", "--threads", "1", "--quiet"]
    trained = nlpft(*args, "--out", str(out))
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert (out / "metrics.json").is_file() and (out / "model.safetensors").is_file()
    # the model repo's files only: `datasets` itself asks the dataset repo whether it holds a
    # loading script (tiny-sentiment.py), which it would refuse to run
    assert "model.safetensors" in hub_env.hub.fetched(TINY) and unsafe_fetches(hub_env.hub, TINY) == []

    hub_env.hub.clear()
    empty = tmp_path / "empty-hf-home"
    start = time.monotonic()
    offline = nlpft(*args, "--out", str(tmp_path / "runs" / "y"), HF_HUB_OFFLINE="1", HF_HOME=str(empty),
                    HF_HUB_CACHE=str(empty / "hub"))
    elapsed = time.monotonic() - start
    assert offline.returncode == 2 and elapsed < 10, (elapsed, offline.stderr[-3000:])
    # the data is read before any model is looked for, so the line names the uncached dataset
    assert ("error: hf:tiny-org/tiny-sentiment: not in the local cache, and the Hub cannot be reached"
            in error_line(offline.stderr))
    assert hub_env.hub.requests == []


# -- the loopback Hub itself: what a dataset loader will ask of it --------------------------------------

def test_the_loopback_hub_serves_a_parquet_dataset_to_huggingface_hub(hub_env):
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    api = HfApi(endpoint=hub_env.url)
    files = ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]
    assert sorted(api.list_repo_files("tiny-org/tiny-sentiment", repo_type="dataset")) == files
    assert api.dataset_info("tiny-org/tiny-sentiment").sha == hub_env.hub.repos[("dataset", "tiny-org/tiny-sentiment")].sha
    folder = Path(snapshot_download("tiny-org/tiny-sentiment", repo_type="dataset", endpoint=hub_env.url,
                                    cache_dir=hub_env.cache))
    train = pq.read_table(folder / "data" / "train-00000-of-00001.parquet")
    assert train.column_names == ["text", "label"] and train.num_rows == 40
    test = pq.read_table(hf_hub_download("tiny-org/tiny-sentiment", "data/test-00000-of-00001.parquet",
                                         repo_type="dataset", endpoint=hub_env.url, cache_dir=hub_env.cache))
    assert test.num_rows == 8 and set(test.column("label").to_pylist()) == {0, 1}
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("tiny-org/no-such-dataset")
