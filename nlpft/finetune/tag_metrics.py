"""Entity-level metrics of a tagger (seqeval), its report section, plot and predictions file.

Entities are compared exactly (same words, same type), as conlleval does: seqeval is called
directly, in its default (conlleval-compatible) mode, which reads IOB1, IOB2 and BIOES
tags alike. Macro averages run over every type found in the gold tags or the predictions
(seqeval's definition: a type only ever predicted counts, with F1 0). Token accuracy counts
tags equal to the gold tag, "O" included.

The entity-type confusion table pairs each gold entity with the predicted entity over the
same words: a row per gold type, a column per predicted type, and "O" for no entity there
(row "O": a predicted entity with no gold entity over those words; column "O": a gold
entity no prediction matched exactly). Its diagonal sums to the micro true positives.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from nlpft.finetune.metrics import _pyplot

NO_ENTITY = "O"


def tagging_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Precision/recall/F1 (micro, macro, per type), token accuracy and the confusion table
    of predicted tag sequences against gold ones (lists of tag names, sentence by sentence)."""
    from seqeval.metrics import accuracy_score, classification_report

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tags must have the same sentences and lengths")
    gold_entities, predicted_entities = entities_of(gold), entities_of(predicted)
    types = sorted({t for t, _, _, _ in gold_entities} | {t for t, _, _, _ in predicted_entities})
    report = classification_report(gold, predicted, output_dict=True, zero_division=0) if types else {}
    predicted_counts = Counter(t for t, _, _, _ in predicted_entities)
    per_type = {
        t: {"precision": float(report[t]["precision"]), "recall": float(report[t]["recall"]),
            "f1": float(report[t]["f1-score"]), "support": int(report[t]["support"]),
            "predicted": predicted_counts[t]}
        for t in types
    }
    micro, macro = report.get("micro avg", {}), report.get("macro avg", {})
    tokens = sum(len(s) for s in gold)
    return {
        "sentences": len(gold),
        "tokens": tokens,
        "gold_entities": len(gold_entities),
        "predicted_entities": len(predicted_entities),
        "micro_precision": float(micro.get("precision", 0.0)),
        "micro_recall": float(micro.get("recall", 0.0)),
        "micro_f1": float(micro.get("f1-score", 0.0)),
        "macro_precision": float(macro.get("precision", 0.0)),
        "macro_recall": float(macro.get("recall", 0.0)),
        "macro_f1": float(macro.get("f1-score", 0.0)),
        "token_accuracy": float(accuracy_score(gold, predicted)) if tokens else 0.0,
        "per_type": per_type,
        "confusion": entity_confusion(gold_entities, predicted_entities, types),
    }


def entities_of(sentences: list[list[str]]) -> list[tuple[str, int, int, int]]:
    """(type, sentence, first word, last word) of every entity, as seqeval reads them."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(t, i, start, end) for i, tags in enumerate(sentences) for t, start, end in get_entities(tags)]


def entity_confusion(gold_entities: list, predicted_entities: list, types: list[str]) -> dict:
    """{"labels": types + ["O"], "matrix": rows gold, columns predicted} (see the module docstring)."""
    labels = list(types) + [NO_ENTITY]
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    predicted_at = {(s, a, b): t for t, s, a, b in predicted_entities}
    gold_places = set()
    for t, s, a, b in gold_entities:
        gold_places.add((s, a, b))
        matrix[index[t]][index[predicted_at.get((s, a, b), NO_ENTITY)]] += 1
    for t, s, a, b in predicted_entities:
        if (s, a, b) not in gold_places:
            matrix[index[NO_ENTITY]][index[t]] += 1
    return {"labels": labels, "matrix": matrix}


def headline(metrics: dict) -> str:
    """One line for the console."""
    return (f"entity F1 {metrics['micro_f1']:.4f} (P {metrics['micro_precision']:.4f}, "
            f"R {metrics['micro_recall']:.4f}), macro F1 {metrics['macro_f1']:.4f}, "
            f"token accuracy {metrics['token_accuracy']:.4f}")


# -- report and plot -------------------------------------------------------------------------
def report_section(metrics: dict, plots: dict[str, str] | None = None, title: str = "Test") -> str:
    """Markdown for report.md: the headline, a per-type table, the confusion table, plots."""
    counts = (f"{metrics['sentences']:,} sentences, {metrics['tokens']:,} tokens, "
              f"{metrics['gold_entities']:,} gold entities, {metrics['predicted_entities']:,} predicted.")
    lines = [f"## {title}: {headline(metrics)}", "", counts, ""]
    if metrics["per_type"]:
        lines += ["| type | precision | recall | F1 | support | predicted |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} | "
                  f"{v['predicted']} |" for name, v in metrics["per_type"].items()]
        lines.append("")
        labels, matrix = metrics["confusion"]["labels"], metrics["confusion"]["matrix"]
        lines += ["Entity types, gold (rows) by predicted (columns); O: no entity over those words.", "",
                  "| gold \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        lines += [f"| {label} | " + " | ".join(str(n) for n in row) + " |" for label, row in zip(labels, matrix)]
        lines.append("")
    for name, file in (plots or {}).items():
        lines += [f"![{name}]({file})", ""]
    return "\n".join(lines)


def plot_type_f1(metrics: dict, path: str | os.PathLike, title: str = "test F1 per entity type") -> Path | None:
    """Horizontal bars of F1 per entity type (support in the labels); None with no types."""
    per_type = metrics["per_type"]
    if not per_type:
        return None
    plt = _pyplot()
    names = sorted(per_type, key=lambda t: per_type[t]["f1"])
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.35 * len(names) + 1.2)))
    scores = [per_type[t]["f1"] for t in names]
    ax.barh([f"{t} ({per_type[t]['support']})" for t in names], scores, color="tab:blue")
    for y, score in enumerate(scores):
        ax.text(min(score + 0.01, 0.9), y, f"{score:.2f}", va="center")
    ax.axvline(metrics["micro_f1"], color="black", linestyle="--", linewidth=1, label=f"micro F1 {metrics['micro_f1']:.2f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- predictions file ------------------------------------------------------------------------
def write_predictions_conll(
    path: str | os.PathLike,
    tokens: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]] | None = None,
) -> Path:
    """CoNLL lines `token<TAB>gold<TAB>predicted` (or `token<TAB>predicted` without gold), a
    blank line between sentences; written to a temporary file then renamed, so a reader
    never sees half a file. Tab-separated, so `read_tagged` reads it back (tag_col picks
    the column) even for tokens with spaces."""
    path = Path(path)
    columns = [tokens, gold, predicted] if gold is not None else [tokens, predicted]
    if any(len(c) != len(tokens) for c in columns):
        raise ValueError("tokens, gold and predicted tags must have the same number of sentences")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            for k, sentence in enumerate(zip(*columns)):
                if len({len(c) for c in sentence}) != 1:
                    raise ValueError(f"sentence {k}: tokens and tags differ in length")
                if k:
                    out.write("\n")
                out.writelines("\t".join(row) + "\n" for row in zip(*sentence))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
