"""`nlpft models list | info` and `nlpft encode`: pretrained Hugging Face checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from nlpft.cli.main import add_command_group, add_offline_option, positive_int

MODEL_HELP = ("alias (see `nlpft models list`), local Hugging Face checkpoint directory, "
              "or hub id (downloaded on first use unless --offline)")

MODELS_EPILOG = """\
examples:
  nlpft models list
  nlpft models info minilm
  nlpft models info path/to/checkpoint --json
  nlpft models info openai-community/gpt2 --offline

A hub id downloads what the Hugging Face cache lacks on first use: configs, tokenizer files
and safetensors weights, never code or pickles; a repo with only pickle weights, or whose
config asks for its own code (auto_map), is refused before its weights are fetched.
HF_HUB_OFFLINE=1 or --offline forbids the network and loads from the cache only.
"""

ENCODE_DESCRIPTION = """\
Sentence embeddings with a pretrained encoder: one vector per non-empty line of --input.

Output: --out FILE.npy (float32, rows in input-line order; numpy.load reads it) and a
sidecar FILE.json with the model, pooling, count and dimension. Both are written
atomically: a killed run leaves the old files or none.
"""

ENCODE_EPILOG = """\
examples:
  nlpft encode --input sentences.txt --out vectors.npy
  nlpft encode --model path/to/checkpoint --input texts.txt --out v.npy --pooling cls --normalize
"""


def register(commands: argparse._SubParsersAction) -> None:
    models, verbs = add_command_group(commands, "models", help="pretrained checkpoints: list and inspect",
                                 description="Pretrained Hugging Face checkpoints nlpft can load.",
                                 epilog=MODELS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    ls = verbs.add_parser("list", help="aliases, well-known hub ids and cached models, with their sizes",
                          description="Aliases, well-known hub ids and the models in the Hugging Face cache: "
                                      "whether each loads on this machine now (installed, or cached), its size "
                                      "on disk, and what a hub id not yet cached downloads on first use (its "
                                      "size from the Hub's listing; unknown with --offline).")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_offline_option(ls)
    ls.set_defaults(_handler=run_list, _parser=ls)

    info = verbs.add_parser("info", help="architecture, size and files of a checkpoint",
                            description="Describe a checkpoint from its JSON files and safetensors headers "
                                        "(no weights are loaded, no code is run).")
    info.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    info.add_argument("--json", action="store_true", help="print JSON")
    add_offline_option(info)
    info.set_defaults(_handler=run_info, _parser=info)

    enc = commands.add_parser("encode", help="sentence embeddings from a pretrained encoder",
                              description=ENCODE_DESCRIPTION, epilog=ENCODE_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    enc.add_argument("--model", default="minilm", help=f"{MODEL_HELP} (default: %(default)s)")
    enc.add_argument("--input", required=True, metavar="FILE", help="UTF-8 text file, one text per line")
    enc.add_argument("--out", required=True, metavar="FILE.npy", help="where to write the vectors")
    enc.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default: %(default)s)")
    enc.add_argument("--max-length", type=positive_int, default=256,
                     help="truncate texts to this many tokens, special tokens included (default: %(default)s)")
    enc.add_argument("--pooling", choices=["mean", "cls"], default="mean",
                     help="average of token vectors (masking padding), or the first token (default: %(default)s)")
    enc.add_argument("--normalize", action="store_true", help="scale vectors to unit length")
    enc.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    add_offline_option(enc)
    enc.add_argument("--config", metavar="FILE", help="YAML or JSON file of options, keys named like the flags")
    enc.set_defaults(_handler=run_encode, _parser=enc)


# -- models list / info ------------------------------------------------------------------

def run_list(args: argparse.Namespace) -> int:
    from nlpft.pretrained.aliases import list_models
    from nlpft.pretrained.loading.hub import human_size

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'NAME':<{width}}  KIND   FAMILY   AVAILABLE  {'ON DISK':>9}  WHERE")
    for r in rows:
        on_disk = human_size(r["disk_bytes"]) if r["disk_bytes"] is not None else "-"
        print(f"{r['name']:<{width}}  {r['kind']:<5}  {r['family']:<7}  {'yes' if r['available'] else 'no':<9}  "
              f"{on_disk:>9}  {r['where']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from nlpft.pretrained.loading import describe_model
    from nlpft.pretrained.loading.hub import human_size

    info = describe_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    params = info["parameters"]
    lines = [
        ("model", info["name"] + (f"  ({info['hub_id']})" if info["hub_id"] and info["hub_id"] != info["name"] else "")),
        ("path", info["path"]),
        ("architecture", ", ".join(info["architectures"]) or "-"),
        ("model type", info["model_type"] or "-"),
        ("family", info["family"]),
        ("parameters", f"{params:,} ({params / 1e6:.1f}M)" if params is not None else "unknown"),
        ("weights", info["weights"]),
        ("hidden size", info["hidden_size"]),
        ("layers", info["layers"]),
        ("attention heads", info["attention_heads"]),
        ("vocab size", info["vocab_size"]),
        ("tokenizer", info["tokenizer_class"] or "-"),
        ("max length", info["max_length"]),
        ("custom code", "yes (nlpft will refuse to load it)" if info["custom_code"] else "no"),
    ]
    for key, value in lines:
        print(f"{key + ':':<17}{'-' if value is None else value}")
    print(f"files ({human_size(info['total_bytes'])}):")
    for f in info["files"]:
        print(f"  {human_size(f['bytes']):>10}  {f['name']}")
    return 0


# -- encode --------------------------------------------------------------------------------

def read_texts(path: str) -> list[str]:
    """Non-empty lines of a UTF-8 file, checked before any model is loaded."""
    from nlpft.errors import UserInputError

    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"{file}: input file not found; pass a UTF-8 text file with one text per line")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[:exc.start].count(b"\n") + 1
        raise UserInputError(f"{file}: not UTF-8 (line {line}, byte {exc.start}); re-save it as UTF-8") from None
    texts = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise UserInputError(f"{file}: no text (only empty lines); put one text per line")
    return texts


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run_encode(args: argparse.Namespace) -> int:
    from nlpft.errors import UserInputError

    out = Path(args.out)
    if out.suffix != ".npy":
        raise UserInputError(f"{out}: --out must end in .npy (a sidecar {out.stem}.json is written next to it)")
    if out.is_dir():
        raise UserInputError(f"{out}: is a directory; pass a file name ending in .npy")
    if args.batch_size < 1 or args.max_length < 1:
        raise UserInputError("--batch-size and --max-length must be at least 1")
    texts = read_texts(args.input)  # before the (slow) model load

    import numpy as np

    from nlpft.pretrained.encode import SentenceEncoder
    from nlpft.runners.output import write_json

    encoder = SentenceEncoder.load(args.model, quiet=args.quiet)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(texts), unit="text", desc="encoding", file=sys.stderr)
    try:
        vectors = encoder.encode(texts, batch_size=args.batch_size, max_length=args.max_length,
                                 pooling=args.pooling, normalize=args.normalize,
                                 progress=(lambda done, total: bar.update(done - bar.n)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, lambda fh: np.save(fh, vectors, allow_pickle=False))
    sidecar = out.with_suffix(".json")
    write_json(sidecar, {
        "model": args.model,
        "model_path": encoder.path,
        "family": encoder.family,
        "pooling": args.pooling,
        "normalize": args.normalize,
        "max_length": min(args.max_length, encoder.tokenizer.max_length),
        "count": int(vectors.shape[0]),
        "dim": int(vectors.shape[1]),
        "dtype": str(vectors.dtype),
        "input": str(args.input),
    })
    if not args.quiet:
        print(f"wrote {out} ({vectors.shape[0]} x {vectors.shape[1]}) and {sidecar}", file=sys.stderr)
    return 0
