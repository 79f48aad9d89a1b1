"""The kinds of row-level problem in a labeled file, and the small wording helpers every
report about them shares (also used by `nlpft.data.tagged`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

NOT_UTF8 = "not UTF-8"
WRONG_FIELD_COUNT = "wrong number of fields"
BAD_JSON = "not a JSON object"
MISSING_FIELD = "missing field"
BAD_VALUE = "bad value"
EMPTY_TEXT = "empty text"
EMPTY_TEXT_PAIR = "empty text pair"
EMPTY_LABEL = "empty label"
NOT_A_NUMBER = "not a number"

# A row with several problems is counted once, under the first of these.
PROBLEM_ORDER = (
    NOT_UTF8,
    WRONG_FIELD_COUNT,
    BAD_JSON,
    MISSING_FIELD,
    BAD_VALUE,
    EMPTY_TEXT,
    EMPTY_TEXT_PAIR,
    EMPTY_LABEL,
    NOT_A_NUMBER,
)
# kinds whose detail (the byte, the field count, the value) helps in the short message
DETAILED_KINDS = {NOT_UTF8, WRONG_FIELD_COUNT, BAD_JSON, MISSING_FIELD, BAD_VALUE, NOT_A_NUMBER}
# what undecodable bytes become when a file is read with errors="surrogateescape"
SURROGATE = re.compile("[\udc80-\udcff]")

HINTS = {
    NOT_UTF8: "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)",
    WRONG_FIELD_COUNT: "quote fields that contain the delimiter, or fix the row",
    BAD_JSON: "each line must be one JSON object",
    MISSING_FIELD: "give every object the key",
    BAD_VALUE: "texts and labels must be strings or numbers",
    EMPTY_TEXT: "fill in the text or remove the row",
    EMPTY_TEXT_PAIR: "fill in the second text or remove the row",
    EMPTY_LABEL: "fill in the label or remove the row",
    NOT_A_NUMBER: "regression labels must be finite numbers",
}


@dataclass
class Problem:
    row: int
    kind: str
    detail: str = ""


def hint(kind: str) -> str:
    return HINTS[kind]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def bad_byte(value: str) -> str:
    match = SURROGATE.search(value)
    return f"byte 0x{ord(match.group()) - 0xDC00:02x}" if match else "bad bytes"
