"""`nlpft corpus list | stats`."""

from __future__ import annotations

import argparse
import json

from nlpft.cli.main import add_command_group
from nlpft.cli.options import add_options, from_args
from nlpft.data.registry import CORPUS_HELP


def add_text_col_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-col", default="text", metavar="NAME",
                        help="the column of text of a dataset corpus (default: %(default)s)")


def add_corpus_options(parser: argparse.ArgumentParser, streaming_help: str) -> None:
    """--corpus, and how a dataset source among it is read: --text-col, --streaming."""
    parser.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help=CORPUS_HELP)
    add_text_col_option(parser)
    parser.add_argument("--streaming", action="store_true",
                        help="read hf: (and Parquet) corpora as a stream instead of downloading (and caching) "
                             "them whole; " + streaming_help)


def register(commands: argparse._SubParsersAction) -> None:
    from nlpft.data.options import CorpusListOptions, CorpusStatsOptions

    corpus, verbs = add_command_group(commands, "corpus", help="known corpora and corpus statistics",
                                 description="Corpora nlpft knows by name, and counts for any corpus.")

    ls = verbs.add_parser("list", help="corpora nlpft knows, and which are on this machine")
    add_options(ls, CorpusListOptions)
    ls.set_defaults(_handler=run_list, _parser=ls)

    st = verbs.add_parser("stats", help="lines, tokens, types of a corpus",
                          description="Count lines, tokens and word types with nlpft's word tokenizer.")
    add_text_col_option(st)
    add_options(st, CorpusStatsOptions)
    st.set_defaults(_handler=run_stats, _parser=st)


def run_list(args: argparse.Namespace) -> int:
    from nlpft.data.options import CorpusListOptions
    from nlpft.data.registry import load_registry

    opts = from_args(CorpusListOptions, args)
    rows = []
    for entry in load_registry().values():
        path = entry.path()
        row = {"name": entry.name, "available": path is not None, "path": str(path) if path else None,
               "description": entry.description, "source": entry.source, "licence": entry.licence,
               "sha256": entry.sha256, "obtain": entry.obtain}
        if opts.verify and path is not None:
            row["checksum_ok"] = entry.verify()
        rows.append(row)
    if opts.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        status = "available" if r["available"] else "not here "
        if "checksum_ok" in r:
            status += " sha256 ok" if r["checksum_ok"] else " SHA256 MISMATCH"
        print(f"{r['name']:<{width}}  {status}  {r['description']}")
        print(f"{'':<{width}}  {'':9}  licence: {r['licence']}; " +
              (f"at {r['path']}" if r["available"] else f"to get it: {r['obtain']}"))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import time
    from collections import Counter

    from nlpft.data.options import CorpusStatsOptions
    from nlpft.data.registry import resolve_corpus
    from nlpft.tokenization import WordTokenizer

    opts = from_args(CorpusStatsOptions, args)
    corpus = resolve_corpus(opts.corpus, text_col=opts.text_col)
    corpus.validate()
    tokenizer = WordTokenizer.untrained(lowercase=opts.lowercase)
    counts: Counter = Counter()
    lines = tokens = 0
    started = time.perf_counter()
    for line in corpus:
        lines += 1
        words = tokenizer.words(line)
        tokens += len(words)
        counts.update(words)
    elapsed = time.perf_counter() - started
    frequent = sum(1 for c in counts.values() if c >= opts.min_count)
    stats = {
        "corpus": corpus.name,
        "files": len(corpus.files()),
        "bytes": corpus.size_bytes(),
        "lines": lines,
        "tokens": tokens,
        "types": len(counts),
        f"types_min_count_{opts.min_count}": frequent,
        "tokens_per_s": tokens / max(elapsed, 1e-9),
        "most_common": counts.most_common(10),
    }
    if opts.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, value in stats.items():
        if key == "most_common":
            value = ", ".join(f"{w} {c:,}" for w, c in value)
        elif isinstance(value, float):
            value = f"{value:,.0f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"{key:<22} {value}")
    return 0
