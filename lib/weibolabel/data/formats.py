"""The formats a table may come in: their suffixes, and which encoding a text file is in."""

from __future__ import annotations

import codecs
import itertools
import math
from pathlib import Path

from weibolabel.util.errors import UserError

TABLE_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".parquet", ".txt", ".json", ".jsonl")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm")
JSON_SUFFIXES = (".json", ".jsonl")
ALL_ROWS = ((0, math.inf),)  # `ranges` that ask for every row


def detect_encoding(path: Path, encoding: str | None, option: str = "--encoding") -> str:
    """`encoding` if given; else UTF-8 (BOM or not), else the one of GB18030 (GBK) and Big5 that decodes the file. Every
    Big5 byte pair is valid GB18030: a file both decode is not guessed at, the UserError shows a line read both ways."""
    if encoding:
        return encoding
    with open(path, "rb") as handle:
        return choose_encoding(lambda: iter(lambda: handle.read(1 << 20), b""), handle.seek, str(path), option)


def choose_encoding(blocks, rewind, name: str, option: str = "--encoding") -> str:
    """The rule of `detect_encoding` over the bytes `blocks()` yields (read again after `rewind(0)`); `name` is what
    messages call the source."""

    def decodes(candidate: str) -> bool:
        rewind(0)
        decoder = codecs.getincrementaldecoder(candidate)()
        try:
            for block in blocks():
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return True
        except UnicodeDecodeError:
            return False

    if decodes("utf-8-sig"):
        return "utf-8-sig"
    readable = [candidate for candidate in ("gb18030", "big5") if decodes(candidate)]
    if len(readable) == 1:
        return readable[0]
    if not readable:
        raise UserError(
            f"{name} is neither UTF-8, GB18030 (GBK) nor Big5 text. Pass its encoding with {option} (e.g. utf-16, "
            "shift_jis), or save it again as UTF-8."
        )
    rewind(0)
    head = b"".join(itertools.islice(blocks(), 4))
    lines = [(n, line) for n, line in enumerate(head.split(b"\n"), start=1) if not line.isascii()]
    shown = ""
    if lines:  # the first line that differs: a file starts with ASCII headers, its text comes later
        number, line = lines[0]
        readings = [line.decode(c, errors="replace").rstrip("\r")[:60] for c in readable]
        shown = f": line {number} reads as GB18030: {readings[0]!r} and as Big5: {readings[1]!r}"
    raise UserError(
        f"{name} reads as Simplified Chinese (GB18030/GBK) and as Traditional Chinese (Big5), and the two "
        f"differ{shown}. Pass the one that reads right: {option} gb18030 or {option} big5."
    )
