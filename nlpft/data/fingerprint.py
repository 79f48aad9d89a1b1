"""What a resumable run was started on, so `--resume` cannot continue it on something else.

A fingerprint holds the sha256 of every input file (corpus, CSVs, tokenizer, initial
vectors or model) and the options that shape the run (model sizes, vocabulary, data split,
columns, ...; not --epochs, --max-steps or --threads, which may change on resume). A run
records it in its partial directory when it starts; a resumed run compares its own with it
and stops, naming each input or option that differs, instead of training the saved state
on other data (or in another shape) and recording the new inputs as the ones it used.
A dataset on the Hub (`hf:NAME[:CONFIG][@SPLIT]`) is recorded by its spec, as given: nlpft
cannot hash what it has not downloaded, so a resumed run accepts the same spec.

Hashing streams each file in 1 MiB blocks: about 1 s per GB, little next to training.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from nlpft.data.sources import dataset_source
from nlpft.errors import UserInputError

FILE_NAME = "fingerprint.json"
BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def input_sha256(spec: str | os.PathLike | None) -> str | None:
    """The content hash of one input: a file's sha256; for a directory (a model, vectors or
    tokenizer folder) one sha256 over its files' names and hashes (a save_to_disk dataset
    directory: over every file under it, and the split named); for anything that is not
    a path (a model alias such as `minilm`, `tfidf`) the spec itself; None when not given."""
    if spec is None:
        return None
    source = dataset_source(spec)
    if source is not None and source.kind == "disk":
        return _tree_sha256(Path(source.location), source.split)
    path = Path(spec)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(f"{child.name}\0{file_sha256(child)}\n".encode())
        return digest.hexdigest()
    return f"name:{spec}"


def _tree_sha256(folder: Path, split: str | None) -> str:
    """One sha256 over every file under a save_to_disk directory (a DatasetDict keeps each
    split in a folder of its own) and the split named, if any."""
    digest = hashlib.sha256(f"split\0{split}\n".encode())
    for child in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(folder).as_posix()}\0{file_sha256(child)}\n".encode())
    return digest.hexdigest()


def fingerprint(inputs: Mapping[str, str | os.PathLike | Iterable | None], options: Mapping) -> dict:
    """{"inputs": {flag: [sha256, ...]}, "options": {flag: value}}; `inputs` maps each input's
    command-line flag (e.g. "--corpus") to one path or a list of paths."""
    hashed = {}
    for flag, specs in inputs.items():
        if specs is None or isinstance(specs, (str, os.PathLike)):
            specs = [specs]
        hashed[flag] = [input_sha256(spec) for spec in specs]
    return {"inputs": hashed, "options": json.loads(json.dumps(dict(options), default=str))}


def differences(saved: dict, current: dict) -> list[str]:
    """One phrase per input or option whose value differs between two fingerprints."""
    found = []
    for flag in sorted(set(saved.get("inputs", {})) | set(current.get("inputs", {}))):
        before, now = saved.get("inputs", {}).get(flag), current.get("inputs", {}).get(flag)
        if before != now:
            found.append(f"{flag} differs from the checkpoint's ({_shown_hashes(before)} vs {_shown_hashes(now)})")
    for flag in sorted(set(saved.get("options", {})) | set(current.get("options", {}))):
        before, now = saved.get("options", {}).get(flag), current.get("options", {}).get(flag)
        if before != now:
            found.append(f"{flag} differs from the checkpoint's ({before} vs {now})")
    return found


def _shown_hashes(hashes: list | None) -> str:
    if not hashes:
        return "none"
    shown = [_shown_hash(h) for h in hashes]
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more files" if len(shown) > 3 else "")


def _shown_hash(value: str | None) -> str:
    if value is None:
        return "none"
    if value.startswith("name:"):
        return value[len("name:"):]
    return f"sha256 {value[:12]}…"


def record_or_check(partial_dir: Path, current: dict, resuming: bool, record: bool = True) -> None:
    """A fresh run records `current` in `partial_dir`; a resumed run that finds a recorded
    fingerprint there raises UserInputError naming everything that differs from it.
    `record` is False on the processes of a multi-process run that only check (rank 0 writes)."""
    path = Path(partial_dir) / FILE_NAME
    if resuming and path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{path}: unreadable ({exc}); drop --resume to start over") from None
        found = differences(saved, current)
        if found:
            raise UserInputError(
                f"--resume: {'; '.join(found)}. Rerun without --resume to start over, or with the "
                "original inputs and options")
        return
    if not record:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
