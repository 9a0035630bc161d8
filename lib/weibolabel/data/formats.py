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


# The Chinese legacy encodings: text in them is never valid UTF-8 beyond a few characters, while almost any bytes decode
# as GB18030, so a UTF-8 file read with one of these would be garbled without an error.
CHINESE_LEGACY = {"gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "hz"}


def detect_encoding(path: Path, encoding: str | None, option: str = "--encoding") -> str:
    """`encoding` if given (but a file that is valid UTF-8 stays UTF-8 under a Chinese legacy encoding: one option
    serves every file of a directory); else UTF-8 (BOM or not), else the one of GB18030 (GBK) and Big5 that decodes the
    file. Every Big5 byte pair is valid GB18030: a file both decode is not guessed at, the UserError shows a line read
    both ways."""
    with open(path, "rb") as handle:
        blocks = lambda: iter(lambda: handle.read(1 << 20), b"")  # noqa: E731
        if not encoding:
            return choose_encoding(blocks, handle.seek, str(path), option)
        if _codec_name(encoding) in CHINESE_LEGACY and _decodes(blocks, handle.seek, "utf-8-sig"):
            return "utf-8-sig"
    return encoding


def _codec_name(encoding: str) -> str | None:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None  # the reader says so, naming the option


def _decodes(blocks, rewind, candidate: str) -> bool:
    rewind(0)
    decoder = codecs.getincrementaldecoder(candidate)()
    try:
        for block in blocks():
            decoder.decode(block)
        decoder.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False


def choose_encoding(blocks, rewind, name: str, option: str = "--encoding") -> str:
    """The rule of `detect_encoding` over the bytes `blocks()` yields (read again after `rewind(0)`); `name` is what
    messages call the source."""
    if _decodes(blocks, rewind, "utf-8-sig"):
        return "utf-8-sig"
    readable = [candidate for candidate in ("gb18030", "big5") if _decodes(blocks, rewind, candidate)]
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
