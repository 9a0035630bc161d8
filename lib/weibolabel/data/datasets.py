"""Inputs read through Hugging Face `datasets` (JSON/JSON Lines files, dataset directories, hub dataset ids), and the
identity of any input, which a resumed run compares. `datasets` is imported only when such an input is given."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from weibolabel.data.formats import ALL_ROWS, JSON_SUFFIXES, TABLE_SUFFIXES, detect_encoding
from weibolabel.util.errors import UserError
from weibolabel.util.hub import hub_reachable

SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")  # what Dataset(Dict).save_to_disk writes
_DATA_FILE_SUFFIXES = (*TABLE_SUFFIXES, ".arrow", ".tsv")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_dataset_input(path: Path) -> bool:
    """A .json/.jsonl file, a dataset directory, or what can only be a hub dataset id: read through `datasets`."""
    if path.is_file():
        return path.suffix.lower() in JSON_SUFFIXES
    if path.is_dir():
        return is_dataset_directory(path)
    return looks_like_hub_id(str(path))


def is_dataset_directory(path: Path) -> bool:
    """Written by save_to_disk, or laid out for `datasets.load_dataset` (a configuring card, or data files only in
    subfolders: data/train-*.parquet). A directory of table files is a list of inputs."""
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


def looks_like_hub_id(spec: str) -> bool:
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
    """The `datasets` view of an input: directories of data files stream (nothing is cached); JSON files, save_to_disk
    directories and hub datasets are memory-mapped Arrow, so a process can read any slice of them alone."""
    import datasets

    split = split or "train"
    if path.is_file():  # .json/.jsonl: JSON Lines, or one array of objects
        # Converted once into Arrow in the datasets cache: streamed, datasets hands a JSON array's mixed-type columns
        # back as raw JSON text ('"heritage"'), which would change the comments.
        encoding = detect_encoding(path, encoding)  # its own message, not one about malformed JSON
        try:
            return datasets.load_dataset("json", data_files=str(path), split="train", encoding=encoding)
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

    # Where datasets keeps a hub dataset it has prepared once (and reads it from when offline).
    *owner, name = dataset_id.split("/")
    cached = Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*owner, camelcase_to_snakecase(name)])
    if not any(p.is_dir() for p in cached.glob("*/*/*")) and not hub_reachable():
        raise UserError(
            f"'{dataset_id}' is not a local file or directory, and as a hub dataset id it is not in the datasets "
            "cache and the Hugging Face Hub cannot be reached from here (no network, or HF_HUB_OFFLINE=1). To use "
            "it, " + dataset_download_advice(dataset_id, split)
        )
    return datasets.load_dataset(dataset_id, split=split)


def dataset_blocks(
    path: Path, dataset, ranges: Sequence[tuple[int, float]], block_rows: int, columns: list[str] | None = None
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, rows) blocks of exactly the rows in `ranges` (as tables.csv_blocks): an Arrow dataset is sliced, a
    stream read up to the last range. ClassLabel columns come back as their names, which the schema maps to ids."""
    import datasets

    if columns is not None:
        dataset = dataset.select_columns(list(dict.fromkeys(columns)))
    features = (dataset.features or {}).items()
    names = {column: feature.names for column, feature in features if isinstance(feature, datasets.ClassLabel)}

    def decoded(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        for column, labels in names.items():
            ids = frame[column].tolist()  # -1 or null: no label
            frame[column] = [labels[int(i)] if not pd.isna(i) and 0 <= i < len(labels) else None for i in ids]
        return frame

    def as_frame(batch: dict) -> pd.DataFrame:
        # Python values, one object column each: an integer column with a null stays integers (pandas would make
        # floats of them), and JSON columns of mixed types come decoded.
        return pd.DataFrame({column: pd.array(values, dtype=object) for column, values in batch.items()})

    if isinstance(dataset, datasets.Dataset):
        table = dataset.with_format(None)
        for start, end in ranges:
            end = min(end, len(dataset))
            for first in range(start, end, block_rows):
                yield first, decoded(as_frame(table[first : min(end, first + block_rows)]))
        return
    position, spans = 0, list(ranges)
    try:
        for batch in dataset.iter(batch_size=block_rows):
            frame = as_frame(batch)
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


def read_dataset(path: Path, split: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Every row of a dataset input, as read_table returns a table."""
    dataset = open_dataset(path, split, encoding)
    blocks = [block for _, block in dataset_blocks(path, dataset, ALL_ROWS, 1 << 16)]
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=dataset.column_names or [])


def dataset_column_types(dataset) -> dict:
    """The Arrow type of each plain column whose type the dataset knows; others (a ClassLabel, read as its names,
    JSON of mixed types, lists) are carried as text."""
    import datasets

    features = (dataset.features or {}).items()
    return {column: feature.pa_type for column, feature in features if isinstance(feature, datasets.Value)}


def dataset_columns(path: Path, dataset) -> list[str]:
    """The column names; a stream that does not know them yet reads its first row."""
    columns = dataset.column_names
    if columns is None:
        columns = next(dataset_blocks(path, dataset, [(0, 1)], 1), (0, pd.DataFrame()))[1].columns
    return list(columns)


def dataset_num_rows(path: Path, dataset) -> int:
    """An Arrow dataset knows its length; a stream is read through once."""
    if hasattr(dataset, "__len__"):
        return len(dataset)
    return sum(len(block) for _, block in dataset_blocks(path, dataset, ALL_ROWS, 1 << 16))


def _malformed_json_message(path: Path, error: Exception) -> str:
    """Where a JSON file stops being valid, read again after `datasets` failed on it (its message names no line)."""
    fallback = f"Could not read {path} with datasets: {type(error).__name__}: {error}"
    if not path.is_file():
        return fallback
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
    return fallback


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
    from weibolabel.util.files import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in _dataset_files(path, split):
        name = file.relative_to(path) if path.is_dir() else file.name
        digest.update(f"{name}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()
