"""Reading comment tables (xlsx, csv, parquet, txt; json/jsonl and Hugging Face datasets through `datasets`), text
normalisation and validation of labeled data.

Every problem is reported with the file, the row as a spreadsheet shows it (header = row 1) and the column.
"""

from __future__ import annotations

import bisect
import difflib
import glob
import hashlib
import html
import itertools
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from weibolabel.errors import UserError
from weibolabel.files import atomic_path
from weibolabel.labels import LabelSchema

TABLE_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".parquet", ".txt", ".json", ".jsonl")
JSON_SUFFIXES = (".json", ".jsonl")
MAX_LISTED = 20  # problems listed in one error message; the rest are counted

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_WHITESPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


# ---------------------------------------------------------------------------------------------------------- text
def clean_text(value) -> str:
    """The text a model sees: HTML entities decoded, zero-width characters dropped, whitespace collapsed."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number typed into a text cell: 123.0 -> "123"
    text = html.unescape(str(value))
    text = _ZERO_WIDTH.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def group_key(text: str) -> str:
    """Near-duplicate key: case, width, whitespace and punctuation folded, so such copies share a fold."""
    folded = unicodedata.normalize("NFKC", text).lower()
    return _NOT_WORD.sub("", folded) or folded


# ---------------------------------------------------------------------------------------------------------- files
def row_name(path: Path, index: int, header_row: int = 1) -> str:
    """How a user finds row `index` (0-based, after the header) in their file."""
    if path.suffix.lower() in JSON_SUFFIXES:
        return f"record {index + 1}"  # the Nth JSON object: blank lines of a JSON Lines file are not counted
    if path.suffix.lower() == ".parquet" or path.suffix.lower() not in TABLE_SUFFIXES:  # also datasets' Arrow rows
        return f"row index {index}"
    if path.suffix.lower() == ".txt":
        return f"line {index + 1}"
    return f"row {index + header_row + 1}"


def check_header_row(header_row: int) -> None:
    if not isinstance(header_row, int) or header_row < 1:
        raise UserError(f"--header_row must be a row number, 1 or more (got {header_row!r}).")


def detect_encoding(path: Path, encoding: str | None) -> str:
    """UTF-8 (with or without BOM) first, then GB18030 (a superset of GBK and GB2312, common for Chinese files)."""
    if encoding:
        return encoding
    for candidate in ("utf-8-sig", "gb18030"):
        try:
            with open(path, encoding=candidate) as handle:
                while handle.read(1 << 20):
                    pass
            return candidate
        except UnicodeDecodeError:
            continue
    raise UserError(f"{path}: the file is neither UTF-8 nor GB18030/GBK text; pass --encoding (e.g. big5).")


def read_table(
    path: str | Path,
    sheet: str | None = None,
    encoding: str | None = None,
    header_row: int = 1,
    split: str | None = None,
) -> pd.DataFrame:
    """The whole table, cells as read (no type coercion of text), with a clear error for unreadable files.
    `header_row` is the spreadsheet row of the column names (.xlsx and .csv); the rows above it are skipped.
    JSON files, dataset directories and hub ids are read through `datasets` (`split` of those that have splits)."""
    path = Path(path)
    if is_dataset_input(path):
        dataset = open_dataset(path, split, encoding)
        blocks = [block for _, block in dataset_blocks(path, dataset, [(0, math.inf)], 1 << 16)]
        frame = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=dataset.column_names or [])
        _check_column_names(frame, path)
        return frame
    if not path.exists():
        raise UserError(f"File not found: {path}")
    if path.is_dir():
        raise UserError(
            f"{path} is a directory; expected a {', '.join(TABLE_SUFFIXES)} file, or a dataset directory "
            "(written by Dataset.save_to_disk, or data files with a dataset card)."
        )
    check_header_row(header_row)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            frame = _read_excel(path, sheet, header_row)
        elif suffix == ".csv":
            frame = pd.read_csv(
                path,
                dtype=object,
                encoding=detect_encoding(path, encoding),
                keep_default_na=False,  # "NA", "null" and "None" are comments too, not missing values
                skiprows=header_row - 1,
                skip_blank_lines=False,  # a blank line is a row in a spreadsheet program: keep row numbers true
            )
            frame = frame.replace("", np.nan)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".txt":
            with open(path, encoding=detect_encoding(path, encoding)) as handle:
                frame = pd.DataFrame({"text": [line.rstrip("\r\n") for line in handle]})
        else:
            raise UserError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(TABLE_SUFFIXES)}.")
    except UserError:
        raise
    except pd.errors.EmptyDataError:
        raise UserError(_empty_file_message(path, header_row)) from None
    except Exception as error:  # a corrupt or mislabelled file: say which and why, not where in pandas
        raise UserError(unreadable_message(path, error, encoding)) from None
    _check_column_names(frame, path)
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write `frame` atomically in the format its suffix names (.xlsx, .csv as UTF-8 with a BOM so Excel reads the
    Chinese text, .parquet), keeping every column and the row order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv", ".parquet"):
        what = suffix or "a file without suffix"
        raise UserError(f"{path}: cannot write a table as {what}; use .xlsx, .csv or .parquet.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if suffix == ".xlsx":
            frame.to_excel(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False, encoding="utf-8-sig")
        else:
            frame.to_parquet(tmp, index=False)


def _empty_file_message(path: Path, header_row: int) -> str:
    where = f" at or below row {header_row} (--header_row)" if header_row > 1 else ""
    return f"{path}: the file is empty (no header row{where}). Check that it is the right file."


def unreadable_message(path: Path, error: Exception, encoding: str | None = None) -> str:
    """What went wrong reading a file, in the user's terms, with what to do about it."""
    suffix = path.suffix.lower()
    if isinstance(error, UnicodeDecodeError):
        return (
            f"{path} is not valid {encoding or error.encoding} text (byte {error.start}: {error.reason}). "
            "Pass the file's encoding with --encoding (e.g. utf-8, gb18030, big5), or leave it out to detect it."
        )
    if suffix in (".xlsx", ".xlsm"):
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
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheets = workbook.sheetnames
    workbook.close()
    if sheet is not None and sheet not in sheets:
        raise UserError(f"{path}: no sheet named '{sheet}'; the sheets are {sheets}. Pass one of them with --sheet.")
    name = sheet if sheet is not None else sheets[0]
    # data_only above and pandas both read a formula's cached value, which is what the user saw in Excel.
    try:
        # keep_default_na=False: a comment reading "NA", "null" or "None" is text; only empty cells are missing.
        frame = pd.read_excel(
            path, sheet_name=name, header=header_row - 1, dtype=object, engine="openpyxl", keep_default_na=False
        )
    except ValueError as error:
        if "header" not in str(error):
            raise
        message = f"{path}: sheet '{name}' has fewer than {header_row} rows (--header_row {header_row})."
        raise UserError(message) from None
    if len(frame.columns) == 0:
        others = f" The workbook's sheets are {sheets}: pick one with --sheet." if len(sheets) > 1 else ""
        raise UserError(f"{path}: sheet '{name}' is empty (nothing at or below row {header_row}).{others}")
    return frame.replace("", np.nan)


def _check_column_names(frame: pd.DataFrame, path: Path) -> None:
    names = [str(c) for c in frame.columns]
    # pandas renames a repeated header "Sentence" to "Sentence.1"; a silent pick of one of them would lose data.
    repeated = sorted({n.rsplit(".", 1)[0] for n in names if re.search(r"\.\d+$", n) and n.rsplit(".", 1)[0] in names})
    if repeated:
        raise UserError(f"{path}: the header has duplicate column names {repeated}; rename them so each is unique.")


def require_column(
    frame: pd.DataFrame, column: str, path: Path, option: str, header_row: int = 1, sheet: str | None = None
) -> None:
    """Stop with the closest fix: another sheet that has the column, a similar name, or the row the header is on."""
    if column in frame.columns:
        return
    path = Path(path)
    names = [str(c) for c in frame.columns]
    hint = difflib.get_close_matches(column, names, n=1, cutoff=0.5)
    other_sheet = _other_sheet_with(path, sheet, header_row, column)
    found_below = _find_header_below(frame, column, header_row)
    where = f"sheet '{sheet}' of {path}" if sheet else str(path)
    message = f"{where}: no column '{column}' in the header (row {header_row}). The columns are {names}."
    if other_sheet is not None:
        message += f" Sheet '{other_sheet}' has it: pass --sheet {other_sheet}."
    elif hint:
        message += f" Did you mean '{hint[0]}'? Pass {option} {hint[0]}."
    elif found_below is not None:
        message += f" '{column}' appears in row {found_below}: pass --header_row {found_below}."
    else:
        message += f" Pass {option} with the right name."
    raise UserError(message)


def _find_header_below(frame: pd.DataFrame, column: str, header_row: int = 1) -> int | None:
    for position, row in enumerate(frame.head(20).itertuples(index=False)):
        if any(str(value).strip() == column for value in row):
            return position + header_row + 1
    return None


def _other_sheet_with(path: Path, sheet: str | None, header_row: int, column: str) -> str | None:
    """The first other sheet of a workbook whose header has `column` (users often label on a second sheet)."""
    if path.suffix.lower() not in (".xlsx", ".xlsm") or not path.is_file():
        return None
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True)
        sheets = workbook.sheetnames
        workbook.close()
        current = sheet if sheet is not None else sheets[0]
        for name in sheets:
            if name == current:
                continue
            header = pd.read_excel(path, sheet_name=name, header=header_row - 1, nrows=0, engine="openpyxl")
            if column in [str(c) for c in header.columns]:
                return name
    except Exception:  # only a hint: an unreadable sheet must not hide the real message
        return None
    return None


def _blank_cell_reasons(path: Path, sheet: str | None, column_number: int, excel_rows: list[int]) -> dict[int, str]:
    """Why cells that read as empty are empty, when the workbook says: a formula that Excel never computed and
    saved, or a merged range (only its top cell holds the value)."""
    if path.suffix.lower() not in (".xlsx", ".xlsm") or not excel_rows:
        return {}
    import openpyxl

    try:  # not read-only: merged ranges are only known to a fully loaded sheet (this runs on errors only)
        workbook = openpyxl.load_workbook(path, data_only=False)
    except Exception:
        return {}
    worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
    reasons = {}
    for row in excel_rows:
        value = worksheet.cell(row=row, column=column_number).value
        if isinstance(value, str) and value.startswith("="):
            reasons[row] = (
                f"the formula {value} has no saved value (the file was written by a program, not saved by Excel): "
                "open the file in Excel and save it, or replace the formula by its value"
            )
    wanted = set(excel_rows)
    for merged in worksheet.merged_cells.ranges:
        if merged.min_col <= column_number <= merged.max_col:
            for row in range(merged.min_row + 1, merged.max_row + 1):
                if row in wanted:
                    reasons[row] = (
                        f"the cell is inside the merged cells {merged.coord}, whose value belongs to its first row "
                        "only: unmerge them and fill in every row"
                    )
    workbook.close()
    return reasons


# ---------------------------------------------------------------------------------------------------------- datasets
# JSON files and Hugging Face datasets are read through `datasets`, imported only when such an input is given: the
# labeling job on a GPU node and the quick commands do not pay its import time.
SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")  # what Dataset(Dict).save_to_disk writes
_DATA_FILE_SUFFIXES = (*TABLE_SUFFIXES, ".arrow", ".tsv")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_dataset_input(path: Path) -> bool:
    """A .json/.jsonl file, a dataset directory, or what can only be a hub dataset id: read through `datasets`."""
    if path.is_file():
        return path.suffix.lower() in JSON_SUFFIXES
    if path.is_dir():
        return is_dataset_directory(path)
    return _looks_like_hub_id(str(path))


def is_dataset_directory(path: Path) -> bool:
    """Written by save_to_disk, or laid out for `datasets.load_dataset`: a dataset card (README.md) that configures
    it, or data files only in subfolders (data/train-*.parquet). A directory of table files is a list of inputs."""
    # A loading script is named after its directory (datasets refuses to run it, and says so); another .py beside
    # the data, a scraper say, does not make a dataset.
    if any((path / name).is_file() for name in (*SAVED_DATASET_FILES, f"{path.name}.py")):
        return True
    card = path / "README.md"
    if card.is_file():
        front = card.read_text(encoding="utf-8", errors="replace").split("\n---", 1)[0]
        if front.startswith("---") and re.search(r"^(configs|dataset_info):", front, re.MULTILINE):
            return True
    top = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES]
    return not top and any(p.suffix.lower() in _DATA_FILE_SUFFIXES for p in path.rglob("*") if p.is_file())


def _looks_like_hub_id(spec: str) -> bool:
    """`name` or `owner/name`, not a missing local file: no table suffix, no existing first folder (data/x)."""
    return (
        _HUB_ID.fullmatch(spec) is not None
        and Path(spec).suffix.lower() not in (*TABLE_SUFFIXES, ".xls")
        and not ("/" in spec and Path(spec.split("/")[0]).is_dir())
    )


def dataset_download_advice(dataset_id: str, split: str) -> str:
    """The commands that put a hub dataset where an offline machine can read it."""
    local_dir = f"data/{dataset_id.split('/')[-1]}"
    return (
        "on a machine with internet run\n"
        f"  python -c \"import datasets; datasets.load_dataset('{dataset_id}', split='{split}')"
        f".save_to_disk('{local_dir}')\"\n"
        f"copy {local_dir} to the same place here and pass it instead of '{dataset_id}' (or, with "
        f"`hf download {dataset_id} --repo-type dataset --local-dir {local_dir}`, the dataset's own files)."
    )


def open_dataset(path: Path, split: str | None = None, encoding: str | None = None):
    """The `datasets` view of an input. Dataset directories of data files stream (nothing is copied into a cache,
    rows are parsed as they are read); JSON files, save_to_disk directories and cached hub datasets are
    memory-mapped Arrow (`datasets.Dataset`), so a process can read any slice of them alone."""
    import datasets

    split = split or "train"
    if path.is_file():  # .json/.jsonl: JSON Lines, or one array of objects
        # Converted once into Arrow in the datasets cache (HF_DATASETS_CACHE) and memory-mapped from there, so each
        # labeling process slices its own chunks; streamed, datasets hands a JSON array's mixed-type columns back
        # as raw JSON text ('"heritage"'), which would change the comments.
        try:
            return datasets.load_dataset(
                "json", data_files=str(path), split="train", encoding=detect_encoding(path, encoding)
            )
        except Exception as error:
            raise UserError(_malformed_json_message(path, error)) from None
    try:
        if path.is_dir() and any((path / name).is_file() for name in SAVED_DATASET_FILES):
            saved = datasets.load_from_disk(str(path))
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise UserError(f"{path} has the splits {list(saved)}, not '{split}': pass one with --split.")
                return saved[split]
            return saved
        if path.is_dir():
            return datasets.load_dataset(str(path), split=split, streaming=True)
        return _open_hub_dataset(str(path), split)
    except UserError:
        raise
    except Exception as error:  # datasets' own message (unknown split, a loading script, a bad card) with the file
        hint = " Pass the split with --split." if "split" in str(error).lower() else ""
        raise UserError(f"Could not read {path} with datasets: {type(error).__name__}: {error}.{hint}") from None


def _open_hub_dataset(dataset_id: str, split: str):
    """From the datasets cache; without network a dataset that is not there fails at once, not after retries."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    from weibolabel.modeling import _hub_reachable

    # Where datasets keeps a hub dataset it has prepared once (and reads it from when offline).
    *owner, name = dataset_id.split("/")
    cached = Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*owner, camelcase_to_snakecase(name)])
    if not any(p.is_dir() for p in cached.glob("*/*/*")) and not _hub_reachable():
        raise UserError(
            f"'{dataset_id}' is not a local file or directory, and as a hub dataset id it is not in the datasets "
            "cache and the Hugging Face Hub cannot be reached from here (no network, or HF_HUB_OFFLINE=1). To use "
            "it, " + dataset_download_advice(dataset_id, split)
        )
    return datasets.load_dataset(dataset_id, split=split)


def dataset_blocks(path: Path, dataset, ranges: list[tuple[int, float]], block_rows: int, columns=None):
    """(first row, rows) blocks holding exactly the rows in `ranges` (sorted, disjoint [start, end) row numbers)
    of an opened dataset: an Arrow dataset is sliced (only these rows are read); a streamed one is read through
    up to the last range. ClassLabel columns come back as their names, which the label schema maps to its ids."""
    import datasets

    if columns is not None:
        dataset = dataset.select_columns(list(dict.fromkeys(columns)))
    names = {
        column: feature.names
        for column, feature in (dataset.features or {}).items()
        if isinstance(feature, datasets.ClassLabel)
    }

    def decoded(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        for column, labels in names.items():
            ids = frame[column].tolist()  # -1 or null: no label
            frame[column] = [labels[int(i)] if not pd.isna(i) and 0 <= i < len(labels) else None for i in ids]
        return frame

    if isinstance(dataset, datasets.Dataset):
        table = dataset.with_format("pandas")
        for start, end in ranges:
            end = min(end, len(dataset))
            for first in range(start, end, block_rows):
                yield first, decoded(table[first : min(end, first + block_rows)])
        return
    position, spans = 0, list(ranges)
    try:
        for batch in dataset.iter(batch_size=block_rows):
            frame = pd.DataFrame(batch)
            for start, end in spans:
                first, last = max(start, position), min(end, position + len(frame))
                if first < last:
                    yield first, decoded(frame.iloc[first - position : last - position])
            position += len(frame)
            if spans and position >= spans[-1][1]:
                return
    except UserError:
        raise
    except Exception as error:
        raise UserError(_malformed_json_message(path, error)) from None


def _malformed_json_message(path: Path, error: Exception) -> str:
    """Where a JSON file stops being valid, found by reading it again (only after `datasets` failed on it: its own
    message names no line)."""
    if not path.is_file():
        return f"Could not read {path} with datasets: {type(error).__name__}: {error}"
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if text.lstrip().startswith("["):  # one array of objects
        try:
            records = json.loads(text)
        except json.JSONDecodeError as bad:
            return f"{path}, line {bad.lineno}: not valid JSON ({bad.msg}, column {bad.colno}). Fix it and run again."
        lines = [(f"record {number}", value) for number, value in enumerate(records, start=1)]
    else:  # JSON Lines
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    lines.append((f"line {number}", json.loads(line)))
                except json.JSONDecodeError as bad:
                    return (
                        f"{path}, line {number}: not valid JSON ({bad.msg}, column {bad.colno}). Fix or delete "
                        "that line (each line of a JSON Lines file is one object) and run again."
                    )
    for where, value in lines:
        if not isinstance(value, dict):
            kind = type(value).__name__
            return f'{path}, {where}: a JSON {kind}, not an object like {{"Sentence": "..."}}. Fix it and run again.'
    # Every line is valid: what datasets cannot read is a column of mixed types (1 and "1") in a file with blank
    # lines (its fallback reader stops at a blank line); the file itself is fine.
    blank = [number for number, line in enumerate(text.splitlines(), start=1) if not line.strip()]
    kinds: dict[str, set[str]] = {}
    for _, record in lines:
        for key, value in record.items():
            if value is not None:
                kinds.setdefault(key, set()).add(type(value).__name__)
    mixed = {key: sorted(types) for key, types in kinds.items() if len(types) > 1}
    if blank and mixed:
        columns = ", ".join(f"'{key}' ({' and '.join(types)})" for key, types in mixed.items())
        return (
            f"{path}: datasets cannot read this JSON Lines file: it has blank lines (line {blank[0]} is the first) "
            f"and columns whose values mix JSON types: {columns}. Delete the blank lines (sed -i '/^\\s*$/d' "
            "FILE) or write each column's values as one type, and run again."
        )
    return f"Could not read {path} with datasets: {type(error).__name__}: {error}"


def _dataset_files(path: Path, split: str | None) -> list[Path]:
    """The files a dataset input is read from: the file, a directory's files, or a hub dataset's cached Arrow."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [Path(entry["filename"]) for entry in open_dataset(path, split).cache_files]


def input_identity(path: Path, split: str | None = None) -> dict:
    """What a resumed labeling run compares to know its input is unchanged: a file's size and time, or those of
    every file a dataset is read from."""
    if path.is_file():
        stat = path.stat()
        return {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns}
    where = {"path": str(path.resolve())} if path.is_dir() else {"dataset": str(path), "split": split or "train"}
    files = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in _dataset_files(path, split)]
    return {**where, "files": files}


def input_sha256(path: str | Path, split: str | None = None) -> str:
    """The content hash a resumed training run compares: of the file, or of every file a dataset is read from."""
    from weibolabel.runs import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in _dataset_files(path, split):
        name = file.relative_to(path) if path.is_dir() else file.name
        digest.update(f"{name}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------- labels
def parse_label(value, schema: LabelSchema) -> tuple[int | None, str | None]:
    """(label id, None) or (None, what is wrong with the cell)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None, "missing label"
    if isinstance(value, bool | np.bool_):
        return None, f"'{value}' is not a label id"
    if isinstance(value, int | np.integer):
        number = int(value)
    elif isinstance(value, float | np.floating):
        if not float(value).is_integer():
            return None, f"'{value}' is not a whole number"
        number = int(value)  # Excel stores 1 as 1.0 once a column holds an empty cell
    else:
        text = str(value)
        if text in schema.names:
            return schema.names.index(text), None
        if re.fullmatch(r"\d+", text):
            number = int(text)
        elif re.fullmatch(r"\d+\.\d*", text):  # "1.0" from a CSV written by a program that saw floats
            if not float(text).is_integer():
                return None, f"'{text}' is not a whole number"
            number = int(float(text))
        elif text.strip() != text and parse_label(text.strip(), schema)[1] is None:
            return None, f"'{text}' has spaces around it; type {text.strip()!r} without them"
        else:
            guess = schema.closest_name(text)
            hint = f"; did you mean '{guess}'?" if guess else ""
            return None, f"'{text}' is neither a label id (0..{len(schema) - 1}) nor a label name {schema.names}{hint}"
    if not 0 <= number < len(schema):
        return None, f"{number} is outside the label schema (ids 0..{len(schema) - 1})"
    return number, None


# ---------------------------------------------------------------------------------------------------------- labeled
@dataclass
class LabeledData:
    """Validated training rows and what validation dropped or merged."""

    rows: pd.DataFrame  # row_id (0-based, below the header), row (as the user numbers it), text, label, group
    issues: pd.DataFrame  # row, column, issue, action
    counts: dict = field(default_factory=dict)


def load_labeled(
    path: str | Path,
    schema: LabelSchema,
    text_column: str = "Sentence",
    label_column: str = "Label",
    sheet: str | None = None,
    encoding: str | None = None,
    on_conflict: str = "drop",
    header_row: int = 1,
    split: str | None = None,
) -> LabeledData:
    """Read and validate a labeled table; bad labels are errors, empty texts and duplicates are reported."""
    path = Path(path)
    frame = read_table(path, sheet=sheet, encoding=encoding, header_row=header_row, split=split)
    require_column(frame, text_column, path, "--text_column", header_row, sheet)
    require_column(frame, label_column, path, "--label_column", header_row, sheet)
    if frame.empty:
        raise UserError(f"{path}: the table has a header (row {header_row}) but no rows below it.")

    rows = [row_name(path, i, header_row) for i in range(len(frame))]
    texts = [clean_text(v) for v in frame[text_column].tolist()]
    labels, bad_labels = [], []
    for i, value in enumerate(frame[label_column].tolist()):
        label, problem = parse_label(value, schema)
        labels.append(label)
        # A row with neither text nor label is a blank spacer row (common in hand-made sheets), not a mistake.
        if problem and not (texts[i] == "" and problem == "missing label"):
            bad_labels.append((i, problem))
    excel = path.suffix.lower() in (".xlsx", ".xlsm")
    if bad_labels and excel:
        column_number = list(frame.columns).index(label_column) + 1  # pandas keeps empty leading columns: A = 1
        blank = [i + header_row + 1 for i, problem in bad_labels if problem == "missing label"]
        reasons = _blank_cell_reasons(path, sheet, column_number, blank)
        bad_labels = [(i, reasons.get(i + header_row + 1, problem)) for i, problem in bad_labels]
    label_errors = [f"  {path}, {rows[i]}, column '{label_column}': {problem}" for i, problem in bad_labels]
    if label_errors:
        listed = "\n".join(label_errors[:MAX_LISTED])
        more = f"\n  ... and {len(label_errors) - MAX_LISTED} more" if len(label_errors) > MAX_LISTED else ""
        raise UserError(
            f"{len(label_errors)} invalid label(s) in {path}:\n{listed}{more}\n"
            f"Each label must be an id {list(range(len(schema)))} or a name {schema.names}. "
            "Fix these cells, or delete the rows, and run again."
        )

    # row_id: 0-based position below the header, the convention of every output; row: the name a user looks up.
    row_ids = np.arange(len(frame), dtype=np.int64)
    table = pd.DataFrame({"row_id": row_ids, "row": rows, "text": texts, "label": labels})
    issues: list[dict] = []
    empty = table["text"] == ""
    blank_row = empty & table["label"].isna()
    reasons = {}
    if excel and (empty & ~blank_row).any():
        column_number = list(frame.columns).index(text_column) + 1
        reasons = _blank_cell_reasons(path, sheet, column_number, [i + header_row + 1 for i in np.flatnonzero(empty)])
    for i in np.flatnonzero(empty):
        why = "empty row" if blank_row[i] else "empty text"
        if i + header_row + 1 in reasons:
            why += f" ({reasons[i + header_row + 1]})"
        issues.append({"row": rows[i], "column": text_column, "issue": why, "action": "dropped"})
    table = table[~empty]

    # Exact duplicates after normalisation: one copy is kept; copies that disagree on the label are all dropped.
    conflict_rows, merged_rows = [], []
    for _, copies in table.groupby("text", sort=False):
        if len(copies) == 1:
            continue
        if copies["label"].nunique() > 1:
            detail = ", ".join(f"{r} = {schema.names[lab]}" for r, lab in zip(copies["row"], copies["label"]))
            conflict_rows += [(r, f"same text, conflicting labels ({detail})") for r in copies["row"]]
        else:
            merged_rows += [(r, f"duplicate of {copies['row'].iloc[0]}") for r in copies["row"].iloc[1:]]
    if conflict_rows and on_conflict == "error":
        listed = "\n".join(f"  {path}, {r}, column '{label_column}': {why}" for r, why in conflict_rows[:MAX_LISTED])
        raise UserError(
            f"{len(conflict_rows)} rows share a text but not a label:\n{listed}\n"
            "Decide on one label for each text, or run with --on_conflict drop to leave them out."
        )
    issues += [{"row": r, "column": label_column, "issue": why, "action": "dropped"} for r, why in conflict_rows]
    issues += [{"row": r, "column": text_column, "issue": why, "action": "merged"} for r, why in merged_rows]
    dropped = {r for r, _ in conflict_rows} | {r for r, _ in merged_rows}
    table = table[~table["row"].isin(dropped)].reset_index(drop=True)
    if table.empty:
        raise UserError(f"{path}: no usable rows remain after validation (see the issues above).")
    table["group"] = [group_key(t) for t in table["text"]]

    counts = {
        "rows_read": len(frame),
        "empty_text_dropped": int(empty.sum()),
        "empty_rows_dropped": int(blank_row.sum()),  # of those, rows with no label either
        "conflicting_duplicates_dropped": len(conflict_rows),
        "duplicates_merged": len(merged_rows),
        "rows_used": len(table),
        "class_counts": {schema.names[i]: int((table["label"] == i).sum()) for i in range(len(schema))},
    }
    return LabeledData(
        rows=table, issues=pd.DataFrame(issues, columns=["row", "column", "issue", "action"]), counts=counts
    )


# ---------------------------------------------------------------------------------------------------------- corpus
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
            if _looks_like_hub_id(spec):
                return [path]  # opening it says whether the datasets cache has it
            raise UserError(f"Input not found: {spec}")
        files = [path]
    if not files:
        raise UserError(f"No {', '.join(TABLE_SUFFIXES)} files match {spec}.")
    return files


@dataclass
class CorpusChunk:
    index: int  # chunk number over the whole input
    rows: pd.DataFrame  # row_id, text (raw), source_file, source_row, plus carried and gold columns


SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm")
_COPY_KEY = b"weibolabel_copy_of"


def copy_spreadsheets(
    files: list[Path], directory: Path, sheet: str | None, header_row: int, rows_per_group: int
) -> dict[Path, Path]:
    """A Parquet copy of each spreadsheet among `files`, in `directory`, one row group per `rows_per_group` rows.
    A workbook can only be parsed whole: the main process parses it once, and every process then reads only its
    own chunks' row groups, instead of each one holding the whole sheet. A copy is reused while its source, sheet
    and header row are unchanged (a resumed run does not parse the workbook again)."""
    copies = {}
    for number, path in enumerate(files):
        if path.suffix.lower() not in SPREADSHEET_SUFFIXES:
            continue
        stat = path.stat()
        source = json.dumps(
            {"path": str(path.resolve()), "bytes": stat.st_size, "modified": stat.st_mtime_ns, "sheet": sheet,
             "header_row": header_row}
        ).encode()  # fmt: skip
        copy = directory / f"input-{number:04d}.parquet"
        if copy.is_file():
            try:
                if (pq.read_schema(copy).metadata or {}).get(_COPY_KEY) == source:
                    copies[path] = copy
                    continue
            except Exception:  # a copy cut short by a kill: made again below
                pass
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
    """The input files as one stream of rows, read a chunk at a time so memory stays bounded. `copies` maps a
    spreadsheet to its Parquet copy (copy_spreadsheets), which is then read instead; `row_counts`, when another
    process has counted the rows already, saves reading whole CSV and text files just to count them."""

    def __init__(
        self,
        files: list[Path],
        text_column: str,
        carry_columns: list[str],
        gold_column: str | None,
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
        self.row_counts: list[int] = []
        self.gold_column = None  # known once every file's header is read; reading rows needs it set
        have_gold = True
        # Decoding a whole file to find its encoding is done once per file, not by every reader below.
        self.encodings = {
            path: detect_encoding(path, encoding) for path in files if self._suffix(path) in (".csv", ".txt")
        }
        for path in files:
            head = self._head(path)
            if self._suffix(path) != ".txt":
                require_column(head, text_column, path, "--text_column", header_row, sheet)
            for column in self.carry_columns:
                require_column(head, column, path, "--carry_columns", header_row, sheet)
            have_gold &= gold_column in head.columns
            if row_counts is None:
                self.row_counts.append(self._count_rows(path, head))
        if row_counts is not None:
            self.row_counts = list(row_counts)
        self.gold_column = gold_column if have_gold and gold_column else None
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
            columns = self._dataset(path).column_names  # None for a stream whose first rows are not read yet
            if columns is None:
                columns = next(dataset_blocks(path, self._dataset(path), [(0, 1)], 1), (0, pd.DataFrame()))[1].columns
            if len(columns) == 0:
                raise UserError(f"{path}: no rows to label (an empty file or dataset). Check that it is the right one.")
            return pd.DataFrame(columns=list(columns))
        suffix = self._suffix(path)
        if suffix == ".parquet":
            try:
                return pd.DataFrame(columns=pq.read_schema(self.copies.get(path, path)).names)
            except Exception as error:
                raise UserError(unreadable_message(path, error)) from None
        if suffix == ".txt":
            return pd.DataFrame(columns=["text"])
        if suffix == ".csv":
            encoding = self.encodings[path]
            try:
                head = pd.read_csv(
                    path,
                    nrows=20,
                    dtype=object,
                    encoding=encoding,
                    skiprows=self.header_row - 1,
                    skip_blank_lines=False,
                )
            except pd.errors.EmptyDataError:
                raise UserError(_empty_file_message(path, self.header_row)) from None
            except Exception as error:
                raise UserError(unreadable_message(path, error, encoding)) from None
            _check_column_names(head, path)
            return head
        return read_table(path, sheet=self.sheet, header_row=self.header_row)

    def _count_rows(self, path: Path, head: pd.DataFrame) -> int:
        if path in self.datasets:  # an Arrow dataset knows its length; a stream is read through once
            dataset = self._dataset(path)
            if hasattr(dataset, "__len__"):
                return len(dataset)
            return sum(len(block) for _, block in dataset_blocks(path, dataset, [(0, math.inf)], 1 << 16))
        suffix = self._suffix(path)
        if suffix == ".parquet":
            try:
                return pq.ParquetFile(self.copies.get(path, path)).metadata.num_rows
            except Exception as error:
                raise UserError(unreadable_message(path, error)) from None
        if suffix in (".csv", ".txt"):
            # Reading it all once here also finds bad bytes and ragged rows before any labeling starts.
            try:
                return sum(len(frame) for _, frame in self._read_ranges(path, [(0, math.inf)], 1 << 16))
            except (UnicodeError, ValueError, OSError) as error:  # bad bytes, ragged rows (ParserError)
                raise UserError(unreadable_message(path, error, self.encoding)) from None
        return len(head)  # a spreadsheet's head is the whole table (see _head): no second read

    def _read_ranges(self, path: Path, ranges: list[tuple[int, float]], block_rows: int):
        """(first row, rows) blocks holding exactly the rows in `ranges` (sorted, disjoint [start, end) row numbers
        of this file, 0-based below the header), in order, reading as little of the rest as the format allows:
        Parquet only the row groups they touch, CSV and text files parse or keep nothing else."""
        suffix = self._suffix(path)
        wanted = [self.text_column, *self.carry_columns] + ([self.gold_column] if self.gold_column else [])
        if path in self.datasets:  # Arrow datasets: only these rows' slices; streams: read past the rest
            yield from dataset_blocks(path, self._dataset(path), ranges, block_rows, columns=wanted)
        elif suffix == ".parquet":
            # Streamed through a 4 MiB buffer: pyarrow's default pre-buffers whole column chunks, and pandas writes
            # up to 1M rows into one row group (130 MiB held at once for 1M comments).
            source = pq.ParquetFile(self.copies.get(path, path), pre_buffer=False, buffer_size=4 << 20)
            group_start = 0
            for group in range(source.metadata.num_row_groups):
                group_end = group_start + source.metadata.row_group(group).num_rows
                if any(start < group_end and end > group_start for start, end in ranges):
                    position = group_start
                    batches = source.iter_batches(
                        batch_size=block_rows, row_groups=[group], columns=list(dict.fromkeys(wanted))
                    )
                    for batch in batches:
                        for start, end in ranges:
                            first, last = max(start, position), min(end, position + batch.num_rows)
                            if first < last:
                                yield first, batch.slice(first - position, last - first).to_pandas()
                        position += batch.num_rows
                group_start = group_end
        elif suffix == ".csv":
            starts = [start for start, _ in ranges]

            def skip(record: int) -> bool:  # record 0 is the first line; the header is at header_row - 1
                row = record - self.header_row
                if row < 0:
                    return record != self.header_row - 1
                at = bisect.bisect_right(starts, row) - 1
                return at < 0 or row >= ranges[at][1]

            frames = pd.read_csv(
                path,
                dtype=object,
                encoding=self.encodings[path],
                chunksize=block_rows,
                keep_default_na=False,  # "NA" and "null" are comments to label, not missing values
                # Rows of other processes' chunks are split into fields, nothing more; reading all (the row count)
                # needs no call per row.
                skiprows=self.header_row - 1 if ranges == [(0, math.inf)] else skip,
                skip_blank_lines=False,  # a blank line is kept as an empty row, so row ids match the file
            )
            yield from _place_in_ranges(frames, ranges)
        elif suffix == ".txt":
            yield from _place_in_ranges(self._text_lines(path, ranges, block_rows), ranges)
        else:
            frame = read_table(path, sheet=self.sheet, header_row=self.header_row)
            for start, end in ranges:
                for first in range(start, min(end, len(frame)), block_rows):
                    yield first, frame.iloc[first : min(end, first + block_rows)]

    def _text_lines(self, path: Path, ranges: list[tuple[int, float]], block_rows: int) -> Iterator[pd.DataFrame]:
        """The lines in `ranges`, in blocks; the other lines are read past, not kept."""
        last = ranges[-1][1]
        with open(path, encoding=self.encodings[path]) as handle:
            lines, at = [], 0
            for number, line in enumerate(handle):
                if number >= last:
                    break
                while number >= ranges[at][1]:
                    at += 1
                if number >= ranges[at][0]:
                    lines.append(line.rstrip("\r\n"))
                    if len(lines) == block_rows:
                        yield pd.DataFrame({self.text_column: lines})
                        lines = []
            if lines:
                yield pd.DataFrame({self.text_column: lines})

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
                block = block.reset_index(drop=True)
                rows = np.arange(first, first + len(block), dtype=np.int64)
                block = pd.DataFrame(
                    {
                        "row_id": rows + offset,
                        "text": block[self.text_column].to_numpy(dtype=object),
                        "source_file": str(path) if len(self.files) > 1 else None,
                        "source_row": rows,
                        **{c: block[c].to_numpy(dtype=object) for c in self.carry_columns},
                        **({"gold": block[self.gold_column].to_numpy(dtype=object)} if self.gold_column else {}),
                    }
                )
                chunk_of_row = block["row_id"].to_numpy() // chunk_size
                cuts = [0, *(np.flatnonzero(np.diff(chunk_of_row)) + 1), len(block)]
                for begin, end in itertools.pairwise(cuts):
                    chunk = int(chunk_of_row[begin])
                    if chunk != current and buffer:
                        yield CorpusChunk(current, pd.concat(buffer, ignore_index=True))
                        buffer = []
                    current = chunk
                    buffer.append(block.iloc[begin:end])
            offset += num_rows
        if buffer:
            yield CorpusChunk(current, pd.concat(buffer, ignore_index=True))


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _place_in_ranges(frames: Iterator[pd.DataFrame], ranges: list[tuple[int, float]]):
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
