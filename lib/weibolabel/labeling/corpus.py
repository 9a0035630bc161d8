"""An unlabeled corpus: the input files (or one dataset) as one stream of rows, cut into numbered chunks and read a
chunk at a time, so memory stays bounded and each process reads only its own chunks."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from weibolabel.data.datasets import (
    dataset_blocks,
    dataset_column_types,
    dataset_columns,
    dataset_num_rows,
    is_dataset_directory,
    is_dataset_input,
    looks_like_hub_id,
    open_dataset,
)
from weibolabel.data.formats import ALL_ROWS, SPREADSHEET_SUFFIXES, TABLE_SUFFIXES, detect_encoding
from weibolabel.data.tables import (
    check_column_names,
    check_header_row,
    csv_blocks,
    parquet_blocks,
    place_in_ranges,
    read_csv,
    read_errors,
    read_table,
    require_column,
    text_line_blocks,
    unreadable_message,
)
from weibolabel.labeling.parts import carry_type
from weibolabel.util.errors import UserError
from weibolabel.util.files import atomic_path

_COPY_KEY = b"weibolabel_copy_of"


def resolve_inputs(spec: str) -> list[Path]:
    """A file, a directory (its table files, sorted), a glob pattern, or one dataset: a dataset directory
    (save_to_disk, or laid out for datasets.load_dataset) or a hub dataset id."""
    path = Path(spec)
    if path.is_dir() and is_dataset_directory(path):
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TABLE_SUFFIXES and not p.name.startswith("."))
    elif any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in TABLE_SUFFIXES)
    else:
        if not path.exists():
            if looks_like_hub_id(spec):
                return [path]  # opening it says whether the datasets cache has it
            raise UserError(f"Input not found: {spec}")
        files = [path]
    if not files:
        raise UserError(f"No {', '.join(TABLE_SUFFIXES)} files match {spec}.")
    return files


def is_among_inputs(spec: str, path: Path) -> bool:
    """Whether a file written at `path` would be one of the files `spec` names (a directory's or a glob's table
    files): a later run would read it as an input."""
    if path.suffix.lower() not in TABLE_SUFFIXES or path.name.startswith("."):
        return False
    if Path(spec).is_dir():
        return path.parent.resolve() == Path(spec).resolve()
    return any(ch in spec for ch in "*?[") and fnmatch.fnmatch(os.path.abspath(path), os.path.abspath(spec))


@dataclass
class CorpusChunk:
    index: int  # chunk number over the whole input
    rows: pd.DataFrame  # row_id, text (raw), source_file, source_row, plus carried and gold columns


def copy_spreadsheets(
    files: list[Path], directory: Path, sheet: str | None, header_row: int, rows_per_group: int
) -> dict[Path, Path]:
    """A Parquet copy of each spreadsheet among `files` in `directory`, one row group per `rows_per_group` rows: a
    workbook is parsed whole once, not by every process. A copy is reused while its source, sheet and header row are
    unchanged (a resumed run does not parse the workbook again)."""
    copies = {}
    for number, path in enumerate(files):
        if path.suffix.lower() not in SPREADSHEET_SUFFIXES:
            continue
        stat = path.stat()
        identity = {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns}
        source = json.dumps(identity | {"sheet": sheet, "header_row": header_row}).encode()
        copy = directory / f"input-{number:04d}.parquet"
        with contextlib.suppress(Exception):  # no copy yet, or one cut short by a kill: made below
            if (pq.read_schema(copy).metadata or {}).get(_COPY_KEY) == source:
                copies[path] = copy
                continue
        frame = read_table(path, sheet=sheet, header_row=header_row)
        # Cells become text the way the labeling reads them (an empty cell stays missing, 12.0 reads as 12), so a
        # column that mixes numbers and text fits one Parquet type.
        table = pa.table({str(c): pa.array([_cell_text(v) for v in frame[c]], pa.string()) for c in frame.columns})
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(copy) as tmp:
            pq.write_table(table.replace_schema_metadata({_COPY_KEY: source}), tmp, row_group_size=rows_per_group)
        copies[path] = copy
    return copies


def _cell_text(value) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Corpus:
    """The input files as one stream of rows, read a chunk at a time. `copies`: spreadsheets' Parquet copies, read
    instead (copy_spreadsheets); `row_counts`, counted by another process, saves reading every file to count it."""

    def __init__(
        self,
        files: list[Path],
        text_column: str,
        carry_columns: list[str],
        gold_column: str | None,
        *,
        sheet: str | None = None,
        encoding: str | None = None,
        header_row: int = 1,
        copies: dict[Path, Path] | None = None,
        row_counts: list[int] | None = None,
        split: str | None = None,
    ):
        check_header_row(header_row)
        self.files, self.text_column, self.sheet, self.encoding = files, text_column, sheet, encoding
        self.header_row, self.split = header_row, split
        self.carry_columns = list(carry_columns)
        self.copies = dict(copies or {})
        # JSON files, dataset directories and hub ids, each opened once through `datasets` (open_dataset).
        self.datasets = {path: None for path in files if path not in self.copies and is_dataset_input(path)}
        self.row_counts = list(row_counts) if row_counts is not None else []
        self.gold_column = None  # known once every file's header is read; reading rows needs it set
        with_gold = []
        types: dict[str, list[pa.DataType]] = {column: [] for column in self.carry_columns}
        # Decoding a whole file to find its encoding is done once per file, not by every reader below.
        self.encodings = {
            path: detect_encoding(path, encoding) for path in files if self._suffix(path) in (".csv", ".txt")
        }
        for path in files:
            head = self._head(path)
            if self._suffix(path) != ".txt":
                require_column(head, text_column, path, "--text_column", header_row=header_row, sheet=sheet)
            file_types = self._column_types(path)
            for column in self.carry_columns:
                require_column(head, column, path, "--carry_columns", header_row=header_row, sheet=sheet)
                types[column].append(file_types.get(column, pa.string()))
            if gold_column in head.columns:
                with_gold.append(path)
            if row_counts is None:
                self.row_counts.append(self._count_rows(path, head))
        self.gold_column = gold_column if with_gold and gold_column else None
        # Files without the gold column, when others have it: their rows have no gold label (the job warns).
        self.files_without_gold = [path for path in files if path not in with_gold] if self.gold_column else []
        # Each carried column's type in the output: the inputs' own where they agree, else text (carry_type).
        self.carry_types = {column: carry_type(kinds) for column, kinds in types.items()}
        if self.num_rows == 0:
            names = ", ".join(str(p) for p in files)
            verb = "has" if len(files) == 1 else "have"
            raise UserError(f"Nothing to label: {names} {verb} no rows below the header.")

    @property
    def num_rows(self) -> int:
        return sum(self.row_counts)

    def _suffix(self, path: Path) -> str:
        """The format actually read: a spreadsheet's copy is Parquet."""
        return self.copies.get(path, path).suffix.lower()

    def _dataset(self, path: Path):
        if self.datasets[path] is None:
            self.datasets[path] = open_dataset(path, self.split, self.encoding)
        return self.datasets[path]

    def _head(self, path: Path) -> pd.DataFrame:
        """The header and the first rows: enough to check the columns and to find a header further down."""
        if path in self.datasets:
            columns = dataset_columns(path, self._dataset(path))
            if len(columns) == 0:
                raise UserError(f"{path}: no rows to label (an empty file or dataset). Check that it is the right one.")
            return pd.DataFrame(columns=columns)
        suffix = self._suffix(path)
        if suffix == ".parquet":
            with read_errors(path):
                head = pd.DataFrame(columns=pq.read_schema(self.copies.get(path, path)).names)
            check_column_names(head, path)
            return head
        if suffix == ".txt":
            return pd.DataFrame(columns=["text"])
        if suffix == ".csv":
            with read_errors(path, self.encodings[path], self.header_row):
                head = read_csv(path, self.encodings[path], self.header_row, nrows=20)
            check_column_names(head, path)
            return head
        return read_table(path, sheet=self.sheet, header_row=self.header_row)

    def _column_types(self, path: Path) -> dict[str, pa.DataType]:
        """The Arrow type of each column of a typed input (Parquet, JSON, datasets); text formats have none."""
        if path in self.datasets:
            return dataset_column_types(self._dataset(path))
        if self._suffix(path) == ".parquet":
            with read_errors(path):
                return {field.name: field.type for field in pq.read_schema(self.copies.get(path, path))}
        return {}

    def _count_rows(self, path: Path, head: pd.DataFrame) -> int:
        if path in self.datasets:
            return dataset_num_rows(path, self._dataset(path))
        suffix = self._suffix(path)
        if suffix == ".parquet":
            with read_errors(path):
                return pq.ParquetFile(self.copies.get(path, path)).metadata.num_rows
        if suffix in (".csv", ".txt"):
            # Reading it all once here also finds bad bytes and ragged rows before any labeling starts.
            try:
                return sum(len(frame) for _, frame in self._read_ranges(path, ALL_ROWS, 1 << 16))
            except (UnicodeError, ValueError, OSError) as error:  # bad bytes, ragged rows (ParserError)
                raise UserError(unreadable_message(path, error, self.encoding)) from None
        return len(head)  # a spreadsheet's head is the whole table (see _head): no second read

    def _read_ranges(
        self, path: Path, ranges: Sequence[tuple[int, float]], block_rows: int
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row, rows) blocks holding exactly the rows in `ranges` (sorted, disjoint [start, end) of this file,
        0-based below the header), in order, reading as little of the rest as the format allows."""
        suffix = self._suffix(path)
        with_gold = self.gold_column and path not in self.files_without_gold
        wanted = [self.text_column, *self.carry_columns] + ([self.gold_column] if with_gold else [])
        if path in self.datasets:  # Arrow datasets: only these rows' slices; streams: read past the rest
            yield from dataset_blocks(path, self._dataset(path), ranges, block_rows, columns=wanted)
        elif suffix == ".parquet":
            columns = list(dict.fromkeys(wanted))
            yield from parquet_blocks(self.copies.get(path, path), ranges, block_rows, columns)
        elif suffix == ".csv":
            yield from csv_blocks(path, self.encodings[path], self.header_row, ranges, block_rows)
        elif suffix == ".txt":
            lines = text_line_blocks(path, self.encodings[path], ranges, block_rows)
            yield from place_in_ranges((pd.DataFrame({self.text_column: block}) for block in lines), ranges)
        else:
            frame = read_table(path, sheet=self.sheet, header_row=self.header_row)
            for start, end in ranges:
                for first in range(start, min(end, len(frame)), block_rows):
                    yield first, frame.iloc[first : min(end, first + block_rows)]

    def iter_chunks(self, chunk_size: int, wanted: Callable[[int], bool] | None = None) -> Iterator[CorpusChunk]:
        """Chunks of exactly `chunk_size` rows (the last may be shorter), across file boundaries: every chunk, or
        only those `wanted(index)` accepts, reading only their rows (a process reads its share, not the corpus)."""
        num_chunks = math.ceil(self.num_rows / chunk_size)
        indices = [c for c in range(num_chunks) if wanted is None or wanted(c)]
        spans = _merge_spans([(c * chunk_size, min((c + 1) * chunk_size, self.num_rows)) for c in indices])
        buffer: list[pd.DataFrame] = []
        current, offset = None, 0
        for path, num_rows in zip(self.files, self.row_counts):
            ranges = [
                (max(start, offset) - offset, min(end, offset + num_rows) - offset)
                for start, end in spans
                if start < offset + num_rows and end > offset
            ]
            for first, block in self._read_ranges(path, ranges, chunk_size) if ranges else ():
                rows = self._output_rows(path, first, block, offset)
                for chunk, part in rows.groupby(rows["row_id"] // chunk_size, sort=False):
                    if chunk != current and buffer:
                        yield CorpusChunk(current, pd.concat(buffer, ignore_index=True))
                        buffer = []
                    current = int(chunk)
                    buffer.append(part)
            offset += num_rows
        if buffer:
            yield CorpusChunk(current, pd.concat(buffer, ignore_index=True))

    def _output_rows(self, path: Path, first: int, block: pd.DataFrame, offset: int) -> pd.DataFrame:
        """A block of `path`'s rows from row `first` on, in the columns of a chunk (`offset`: rows of earlier files)."""
        block = block.reset_index(drop=True)
        rows = np.arange(first, first + len(block), dtype=np.int64)
        columns = {
            "row_id": rows + offset,
            "text": block[self.text_column].to_numpy(dtype=object),
            "source_file": str(path) if len(self.files) > 1 else None,
            "source_row": rows,
            **{c: block[c].to_numpy(dtype=object) for c in self.carry_columns},
        }
        if self.gold_column:  # a file without the gold column has no gold cells
            columns["gold"] = None if path in self.files_without_gold else block[self.gold_column].to_numpy(object)
        return pd.DataFrame(columns)


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
