"""One table of any supported format (xlsx, csv, parquet, txt; json/jsonl and datasets through data.datasets), read
whole or in blocks of rows, and written. Problems name the file, the row as a spreadsheet shows it and the column."""

from __future__ import annotations

import bisect
import datetime
import difflib
import logging
import math
import re
import shlex
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from weibolabel.data.datasets import is_dataset_input, read_dataset
from weibolabel.data.formats import ALL_ROWS, JSON_SUFFIXES, SPREADSHEET_SUFFIXES, TABLE_SUFFIXES, detect_encoding
from weibolabel.util.errors import UserError
from weibolabel.util.files import atomic_path


# ---------------------------------------------------------------------------------------------------------- files
def row_name(path: Path, index: int, header_row: int = 1) -> str:
    """How a user finds row `index` (0-based, after the header) in their file."""
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return f"record {index + 1}"  # the Nth JSON object: blank lines of a JSON Lines file are not counted
    if suffix == ".parquet" or suffix not in TABLE_SUFFIXES:  # also datasets' Arrow rows
        return f"row index {index}"
    if suffix == ".txt":
        return f"line {index + 1}"
    return f"row {index + header_row + 1}"


def check_header_row(header_row: int) -> None:
    if not isinstance(header_row, int) or header_row < 1:
        raise UserError(f"--header_row must be a row number, 1 or more (got {header_row!r}).")


# ---------------------------------------------------------------------------------------------------------- reading
def read_table(
    path: str | Path,
    sheet: str | None = None,
    encoding: str | None = None,
    header_row: int = 1,
    split: str | None = None,
    encoding_option: str = "--encoding",
) -> pd.DataFrame:
    """The whole table, cells as read (text not coerced); `header_row` is the spreadsheet row of the column names.
    JSON files, dataset directories and hub ids are read through `datasets` (`split` of those that have splits).
    Messages about the encoding name `encoding_option`, the flag that sets it."""
    path = Path(path)
    if is_dataset_input(path):
        frame = read_dataset(path, split, encoding)
    else:
        if not path.exists():
            raise UserError(f"File not found: {path}")
        if path.is_dir():
            raise UserError(
                f"{path} is a directory; expected a {', '.join(TABLE_SUFFIXES)} file, or a dataset directory "
                "(written by Dataset.save_to_disk, or data files with a dataset card)."
            )
        check_header_row(header_row)
        with read_errors(path, encoding, header_row, encoding_option):
            frame = _read_file(path, sheet, encoding, header_row, encoding_option)
    check_column_names(frame, path)
    return frame


def _read_file(path: Path, sheet: str | None, encoding: str | None, header_row: int, option: str) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in SPREADSHEET_SUFFIXES:
        return _read_excel(path, sheet, header_row)
    if suffix == ".csv":
        return read_csv(path, detect_encoding(path, encoding, option), header_row).replace("", np.nan)
    if suffix == ".parquet":
        check_column_names(pd.DataFrame(columns=pq.read_schema(path).names), path)  # pandas calls repeats "damaged"
        return pd.read_parquet(path)
    if suffix == ".txt":
        blocks = text_line_blocks(path, detect_encoding(path, encoding, option))
        return pd.DataFrame({"text": [line for lines in blocks for line in lines]})
    raise UserError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(TABLE_SUFFIXES)}.")


@contextmanager
def read_errors(
    path: Path, encoding: str | None = None, header_row: int = 1, encoding_option: str = "--encoding"
) -> Iterator[None]:
    """A file that cannot be read stops the job with what is wrong and what to do, named by `path`."""
    try:
        yield
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        where = f" at or below row {header_row} (--header_row)" if header_row > 1 else ""
        raise UserError(f"{path}: the file is empty (no header row{where}). Check that it is the right file.") from None
    except Exception as error:  # a corrupt or mislabelled file: say which and why, not where in pandas
        raise UserError(unreadable_message(path, error, encoding, encoding_option)) from None


def unreadable_message(
    path: Path, error: Exception, encoding: str | None = None, encoding_option: str = "--encoding"
) -> str:
    """What went wrong reading a file, in the user's terms, with what to do about it."""
    suffix = path.suffix.lower()
    if isinstance(error, UnicodeDecodeError):
        return (
            f"{path} is not valid {encoding or error.encoding} text (byte {error.start}: {error.reason}). Pass the "
            f"file's encoding with {encoding_option} (e.g. utf-8, gb18030, big5), or leave it out to detect it."
        )
    if suffix in SPREADSHEET_SUFFIXES:
        return (
            f"{path} is not a readable Excel workbook ({type(error).__name__}: {error}). It may be damaged, or another "
            "format renamed to .xlsx (an old .xls, a .csv): open it in Excel and save it as 'Excel Workbook (.xlsx)'."
        )
    if suffix == ".parquet":
        return (
            f"{path} is not a readable Parquet file ({type(error).__name__}: {error}). It may be damaged or cut short "
            "(an interrupted copy or write): copy or export it again."
        )
    if isinstance(error, pd.errors.ParserError):
        return (
            f"{path}: {str(error).strip()}. A row has more cells than the header: put texts that contain commas "
            "in double quotes, or export the file again from a spreadsheet program."
        )
    return f"Could not read {path}: {type(error).__name__}: {error}"


def _read_excel(path: Path, sheet: str | None, header_row: int = 1) -> pd.DataFrame:
    # pandas reads a formula's cached value (openpyxl's data_only), which is what the user saw in Excel.
    with pd.ExcelFile(path, engine="openpyxl") as workbook:
        sheets = workbook.sheet_names
        if sheet is not None and sheet not in sheets:
            raise UserError(
                f"{path}: no sheet named '{sheet}'; the sheets are {sheets}. Pass one of them with --sheet."
            )
        name = sheet if sheet is not None else sheets[0]
        try:
            # keep_default_na=False: a comment reading "NA", "null" or "None" is text; only empty cells are missing.
            frame = pd.read_excel(workbook, sheet_name=name, header=header_row - 1, dtype=object, keep_default_na=False)
        except ValueError as error:
            if "header" not in str(error):
                raise
            message = f"{path}: sheet '{name}' has fewer than {header_row} rows (--header_row {header_row})."
            raise UserError(message) from None
    if len(frame.columns) == 0:
        others = f" The workbook's sheets are {sheets}: pick one with --sheet." if len(sheets) > 1 else ""
        raise UserError(f"{path}: sheet '{name}' is empty (nothing at or below row {header_row}).{others}")
    # Texts as written: the escapes of characters a worksheet cannot hold (write_xlsx, Excel) are turned back.
    frame.columns = [unescape_cell_text(c) if isinstance(c, str) else c for c in frame.columns]
    frame = frame.map(lambda value: unescape_cell_text(value) if isinstance(value, str) else value)
    return frame.replace("", np.nan)


def read_csv(path: Path, encoding: str, header_row: int, **options):
    """pandas' reader with the options every CSV is read with; `options` adds nrows, chunksize or its own skiprows."""
    # keep_default_na=False: "NA", "null" and "None" are comments too, not missing values; skip_blank_lines=False:
    # a blank line is a row in a spreadsheet program, so row numbers stay true.
    defaults = {"dtype": object, "encoding": encoding, "keep_default_na": False, "skip_blank_lines": False}
    return pd.read_csv(path, **{**defaults, "skiprows": header_row - 1, **options})


def csv_blocks(
    path: Path, encoding: str, header_row: int, ranges: Sequence[tuple[int, float]], block_rows: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, rows) blocks holding exactly the rows in `ranges` (sorted, disjoint [start, end) row numbers,
    0-based below the header), in order: the other rows are split into fields, nothing more."""
    starts = [start for start, _ in ranges]

    def skip(record: int) -> bool:  # record 0 is the first line; the header is at header_row - 1
        row = record - header_row
        if row < 0:
            return record != header_row - 1
        at = bisect.bisect_right(starts, row) - 1
        return at < 0 or row >= ranges[at][1]

    # Reading every row (the row count) needs no call per row.
    options = {} if tuple(ranges) == ALL_ROWS else {"skiprows": skip}
    yield from place_in_ranges(read_csv(path, encoding, header_row, chunksize=block_rows, **options), ranges)


def text_line_blocks(
    path: Path, encoding: str, ranges: Sequence[tuple[int, float]] = ALL_ROWS, block_rows: float = math.inf
) -> Iterator[list[str]]:
    """The lines of a text file in `ranges` (as csv_blocks), in lists of up to `block_rows`; the other lines are
    read past, not kept."""
    last = ranges[-1][1]
    with open(path, encoding=encoding) as handle:
        lines, at = [], 0
        for number, line in enumerate(handle):
            if number >= last:
                break
            while number >= ranges[at][1]:
                at += 1
            if number >= ranges[at][0]:
                lines.append(line.rstrip("\r\n"))
                if len(lines) == block_rows:
                    yield lines
                    lines = []
        if lines:
            yield lines


def parquet_blocks(
    path: Path, ranges: Sequence[tuple[int, float]], block_rows: int, columns: list[str]
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, rows) blocks holding exactly the rows in `ranges` (as csv_blocks), reading only the row groups
    they touch."""
    # Streamed through a 4 MiB buffer: pyarrow's default pre-buffers whole column chunks, and pandas writes up to 1M
    # rows into one row group (130 MiB held at once for 1M comments).
    source = pq.ParquetFile(path, pre_buffer=False, buffer_size=4 << 20)
    group_start = 0
    for group in range(source.metadata.num_row_groups):
        group_end = group_start + source.metadata.row_group(group).num_rows
        if any(start < group_end and end > group_start for start, end in ranges):
            position = group_start
            for batch in source.iter_batches(batch_size=block_rows, row_groups=[group], columns=columns):
                for start, end in ranges:
                    first, last = max(start, position), min(end, position + batch.num_rows)
                    if first < last:
                        # integer_object_nulls: an integer column with a null stays integers, not floats.
                        rows = batch.slice(first - position, last - first)
                        yield first, rows.to_pandas(integer_object_nulls=True)
                position += batch.num_rows
        group_start = group_end


def place_in_ranges(
    frames: Iterator[pd.DataFrame], ranges: Sequence[tuple[int, float]]
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, rows) for frames that hold the rows of `ranges` one after another, with no gaps."""
    spans = iter(ranges)
    position, end = next(spans)
    for frame in frames:
        while len(frame):
            if position >= end:
                position, end = next(spans, (None, None))
                if position is None:
                    return  # more rows than counted: the file grew after it was counted; they were never asked for
            take = int(min(len(frame), end - position))
            yield position, frame.iloc[:take]
            frame, position = frame.iloc[take:], position + take


# ---------------------------------------------------------------------------------------------------------- columns
def check_column_names(frame: pd.DataFrame, path: Path) -> None:
    names = [str(c) for c in frame.columns]
    # pandas renames a repeated header "Sentence" to "Sentence.1"; a silent pick of one of them would lose data.
    repeated = sorted({n.rsplit(".", 1)[0] for n in names if re.search(r"\.\d+$", n) and n.rsplit(".", 1)[0] in names})
    repeated += sorted({n for n in names if names.count(n) > 1})  # Parquet of pyarrow, polars or Spark keeps them
    if repeated:
        raise UserError(f"{path}: the header has duplicate column names {repeated}; rename them so each is unique.")


def require_column(
    frame: pd.DataFrame, column: str, path: Path, option: str, header_row: int = 1, sheet: str | None = None
) -> None:
    """Stop with the closest fix: another sheet that has the column, a similar name, or the row the header is on.
    `option` names the job's option; a file read in a fixed layout passes a description: the advice edits the file."""
    if column in frame.columns:
        return
    path = Path(path)
    names = [str(c) for c in frame.columns]
    has_options = option.startswith("--")
    hint = difflib.get_close_matches(column, names, n=1, cutoff=0.5)
    other_sheet = _other_sheet_with(path, sheet, header_row, column)
    found_below = _find_header_below(frame, column, header_row)
    separator = _separator_in(names, column) if path.suffix.lower() == ".csv" else None
    where = f"sheet '{sheet}' of {path}" if sheet else str(path)
    message = f"{where}: no column {column!r} in the header (row {header_row}). The columns are {names}."
    if separator is not None:
        message += (
            f" The header is one column holding {separator!r}: the file is separated by {separator!r}, not by "
            "commas. Export it again as CSV (comma-separated) or as .xlsx."
        )
    elif other_sheet is not None:
        message += (
            f" Sheet {other_sheet!r} has it: pass --sheet {shell_word(other_sheet)}."
            if has_options
            else f" Sheet {other_sheet!r} has it: this file is read from its first sheet, so move that sheet first."
        )
    elif hint:
        message += (
            f" Did you mean {hint[0]!r}? Pass {option} {shell_word(hint[0])}."
            if has_options
            else f" Did you mean {hint[0]!r}? Rename that header cell to {column!r}."
        )
    elif found_below is not None:
        message += (
            f" {column!r} appears in row {found_below}: pass --header_row {found_below}."
            if has_options
            else f" {column!r} appears in row {found_below}: delete the rows above it, so the header is row 1."
        )
    else:
        message += f" Pass {option} with the right name." if has_options else f" Add the column {column!r}."
    raise UserError(message)


def shell_word(text: str) -> str:
    """`text` as one word of a shell command, quoted only where a shell would split or expand it ('Sentence;Label')."""
    return shlex.quote(text) if not text or re.search(r"[\s;&|<>()$`\\\"'*?\[\]#~!{}]", text) else text


def _separator_in(names: list[str], column: str) -> str | None:
    """The separator of a CSV read as one column because it is not comma-separated ('Sentence;Label')."""
    if len(names) == 1:
        for separator in (";", "\t", "|"):
            if column in [part.strip() for part in names[0].split(separator)]:
                return separator
    return None


def _find_header_below(frame: pd.DataFrame, column: str, header_row: int = 1) -> int | None:
    for position, row in enumerate(frame.head(20).itertuples(index=False)):
        if any(str(value).strip() == column for value in row):
            return position + header_row + 1
    return None


def _other_sheet_with(path: Path, sheet: str | None, header_row: int, column: str) -> str | None:
    """The first other sheet of a workbook whose header has `column` (users often label on a second sheet)."""
    if path.suffix.lower() not in SPREADSHEET_SUFFIXES or not path.is_file():
        return None
    try:
        with pd.ExcelFile(path, engine="openpyxl") as workbook:
            current = sheet if sheet is not None else workbook.sheet_names[0]
            for name in workbook.sheet_names:
                if name == current:
                    continue
                header = pd.read_excel(workbook, sheet_name=name, header=header_row - 1, nrows=0)
                if column in [str(c) for c in header.columns]:
                    return name
    except Exception:  # only a hint: an unreadable sheet must not hide the real message
        return None
    return None


def blank_cell_reasons(path: Path, sheet: str | None, column_number: int, excel_rows: list[int]) -> dict[int, str]:
    """Why cells that read as empty are empty, when the workbook says: a formula with no saved value, or a merged
    range (only its top cell holds the value)."""
    if path.suffix.lower() not in SPREADSHEET_SUFFIXES or not excel_rows:
        return {}
    import openpyxl

    try:  # not read-only: merged ranges are only known to a fully loaded sheet (this runs on errors only)
        workbook = openpyxl.load_workbook(path, data_only=False)
    except Exception:
        return {}
    worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
    reasons = {}
    for row in excel_rows:
        cell = worksheet.cell(row=row, column=column_number)
        if cell.data_type == "f":  # a text cell that starts with '=' is text, not a formula
            reasons[row] = (
                f"the formula {cell.value} has no saved value (the file was written by a program, not saved by Excel): "
                "open the file in Excel and save it, or replace the formula by its value"
            )
    for merged in worksheet.merged_cells.ranges:
        if merged.min_col <= column_number <= merged.max_col:
            for row in set(excel_rows) & set(range(merged.min_row + 1, merged.max_row + 1)):
                reasons[row] = (
                    f"the cell is inside the merged cells {merged.coord}, whose value belongs to its first row "
                    "only: unmerge them and fill in every row"
                )
    workbook.close()
    return reasons


# ---------------------------------------------------------------------------------------------------------- writing
def write_table(frame: pd.DataFrame, path: str | Path, name: str | Path | None = None) -> None:
    """Write `frame` atomically as .xlsx (`write_xlsx`), .csv (UTF-8 with a BOM and CRLF, for Excel) or .parquet,
    every column in order. `name`: what messages call the file (the file it becomes, when `path` is a temporary
    name)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv", ".parquet"):
        what = suffix or "a file without suffix"
        raise UserError(f"{path}: cannot write a table as {what}; use .xlsx, .csv or .parquet.")
    if suffix == ".xlsx":
        write_xlsx(path, {"Sheet1": frame}, name=name)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            # CRLF line ends, as Excel writes them: the csv module quotes a field holding any character of the line
            # end, so a bare carriage return in a comment ("\n" alone leaves it bare) cannot split its row.
            frame.to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\r\n")
        else:
            _write_parquet(frame, tmp, name or path)


def _write_parquet(frame: pd.DataFrame, path: Path, name: str | Path) -> None:
    """`frame` as Parquet; a column that mixes types (numbers and text, as a CSV's text cells and a sheet's number
    cells merged give) is written as text, with a warning: a Parquet column holds one type."""
    import pyarrow as pa

    try:
        frame.to_parquet(path, index=False)
        return
    except pa.ArrowException:
        mixed = [column for column in frame.columns if not _one_arrow_type(frame[column])]
        if not mixed:
            raise
    frame = frame.copy()
    for column in mixed:  # str() keeps every digit of an integer, a float as repr gives it; empty cells stay empty
        frame[column] = frame[column].map(lambda value: value if _is_missing(value) else str(value))
    frame.to_parquet(path, index=False)
    logging.getLogger("weibolabel").warning(
        f"{name}: the column(s) {[str(c) for c in mixed]} mix types (e.g. numbers and text); a Parquet column holds "
        "one type, so they were written as text."
    )


def _one_arrow_type(column: pd.Series) -> bool:
    import pyarrow as pa

    try:
        pa.array(column, from_pandas=True)
    except pa.ArrowException:
        return False
    return True


# Integers from here on are written as text cells, their exact digits (they read back as text). A cell's number is a
# double, exact to 2**53 (9.0e15), and openpyxl writes 16 digits; but Excel shows, edits and exports (CSV) only 15
# significant digits, so a 16-digit Weibo mid below 2**53 would still reach the annotators with its last digit
# zeroed (4987654321098760). 15 digits is the bound at which every program a sheet goes through keeps the id whole.
EXACT_IN_EXCEL = 10**15
# Excel's most characters in one cell (openpyxl cuts longer strings silently: the writer cuts them itself, and says so).
CELL_LIMIT = 32767
# Characters a worksheet cannot hold (XML 1.0 forbids them; openpyxl's ILLEGAL_CHARACTERS_RE), and the carriage
# return, which an XML reader turns into a line feed. Each is written as the OOXML escape Excel itself uses,
# _xHHHH_ (U+000B -> _x000B_), and a literal _xHHHH_ in a text as _x005F_xHHHH_ (an escaped underscore), so Excel
# shows the text as it is and read_table restores it exactly.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0d\x0e-\x1f]|_(?=x[0-9A-Fa-f]{4}_)")
# What read_table turns back: the escapes above. Excel escapes every control character (and openpyxl drops the
# x005F_ of Excel's escaped underscores in shared strings, see docs/annotation_loop.md); other _xHHHH_ are text.
_ESCAPED = re.compile(r"_x(000[0-9A-Da-d]|000[EFef]|001[0-9A-Fa-f]|005[Ff])_")


def escape_cell_text(text: str) -> str:
    """`text` as a worksheet can hold it: see _UNWRITABLE."""
    return _UNWRITABLE.sub(lambda m: f"_x{ord(m.group()):04X}_", text)


def unescape_cell_text(text: str) -> str:
    """The text `escape_cell_text` (or Excel) escaped, restored."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text) if "_x" in text else text


def write_xlsx(
    path: str | Path,
    sheets: dict[str, pd.DataFrame],
    decorate=None,
    if_cut: str = "write a .csv or .parquet to keep them whole",
    name: str | Path | None = None,
) -> None:
    """The one .xlsx writer, atomic, a sheet per frame: strings are text cells (=, +, -, @ never make a formula),
    escaped (_UNWRITABLE), cut to a cell's limit with a warning ending in `if_cut`; `decorate(workbook)` styles it."""
    from openpyxl import Workbook

    path = Path(path)
    workbook = Workbook()
    workbook.remove(workbook.active)
    cut = []
    for title, frame in sheets.items():
        worksheet = workbook.create_sheet(title)
        for row_number, values in enumerate([list(frame.columns), *frame.itertuples(index=False)], start=1):
            for column_number, value in enumerate(values, start=1):
                if _put_cell(worksheet.cell(row=row_number, column=column_number), value):
                    cut.append(f"sheet '{title}', column '{frame.columns[column_number - 1]}', row {row_number}")
    if decorate is not None:
        decorate(workbook)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _save(workbook, tmp)
    if cut:
        listed = "; ".join(cut[:10]) + (f"; and {len(cut) - 10} more" if len(cut) > 10 else "")
        logging.getLogger("weibolabel").warning(
            f"{name or path}: {len(cut)} text(s) longer than Excel's {CELL_LIMIT:,}-character cell limit were cut "
            f"to fit ({listed}); {if_cut}."
        )


def _save(workbook, path: Path) -> None:
    """openpyxl's Workbook.save with the archive closed on every way out: a full disk raises once, here, not again
    from the garbage collector at exit."""
    from openpyxl.writer.excel import ExcelWriter

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(workbook, archive).write_data()


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _put_cell(cell, value) -> bool:
    """Write `value` into `cell`, a string always as text, an integer of more than 15 digits too (EXACT_IN_EXCEL);
    whether a too-long text was cut."""
    if _is_missing(value):
        return False
    if isinstance(value, bool | np.bool_):
        cell.value = bool(value)
    elif isinstance(value, int | np.integer) and abs(int(value)) < EXACT_IN_EXCEL:
        cell.value = int(value)
    elif isinstance(value, float | np.floating) and math.isfinite(value):
        cell.value = float(value)
    elif isinstance(value, pd.Timestamp | datetime.datetime | datetime.date) and getattr(value, "tzinfo", None) is None:
        cell.value = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
    else:  # text, and what a cell has no type for (a time zone, infinity, a list) as its text
        text = escape_cell_text(str(value))
        cell.value = text if len(text) <= CELL_LIMIT else _cut_to_fit(str(value))
        cell.data_type = "s"  # openpyxl makes a formula of a string that starts with '=': this keeps it text
        return len(text) > CELL_LIMIT
    return False


def _cut_to_fit(text: str) -> str:
    """The longest start of `text` whose escaped form fits one cell, escaped (an escape is never cut in half)."""
    # The escaped length grows with the length of the start: bisect it.
    fits = bisect.bisect_right(range(len(text) + 1), CELL_LIMIT, key=lambda size: len(escape_cell_text(text[:size])))
    return escape_cell_text(text[: fits - 1])
