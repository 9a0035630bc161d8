"""Sharded, restartable Parquet output: one part per chunk, written atomically with a completion record, then a
verified merge into the final file (the datatrove way, keyed by chunk so any process count can resume)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from weibolabel.util.errors import UserError
from weibolabel.util.files import atomic_path

METADATA_KEY = b"weibolabel"
# How long the merge waits for parts that other nodes finished to show up (NFS caches attributes up to 60 s).
MERGE_WAIT_S = 120.0


def output_schema(multi_file: bool, carry_types: dict[str, pa.DataType], with_gold: bool) -> pa.Schema:
    """The labeling output's columns; `carry_types` are the carried columns' types (`carry_type`)."""
    fields = [
        pa.field("row_id", pa.int64(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("label_name", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("status", pa.string()),
        pa.field("truncated", pa.bool_()),
    ]
    if multi_file:
        fields += [pa.field("source_file", pa.string()), pa.field("source_row", pa.int64())]
    fields += [pa.field(column, kind) for column, kind in carry_types.items()]
    if with_gold:
        fields.append(pa.field("gold_label", pa.int64()))
    return pa.schema(fields)


def carry_type(types: list[pa.DataType]) -> pa.DataType:
    """A carried column's output type from its type in each input: theirs where they agree (integers as int64), else
    string, so every part has the same type and no value is rounded through a float."""
    kinds = {kind.value_type if pa.types.is_dictionary(kind) else kind for kind in types}
    kinds = {pa.string() if pa.types.is_large_string(kind) else kind for kind in kinds if not pa.types.is_null(kind)}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds and all(pa.types.is_integer(kind) for kind in kinds):
        return pa.int64()
    return pa.string()


def carried_column(values, kind: pa.DataType):
    """A chunk's values of a carried column as `kind` holds them: integers as nullable Int64 (a null must not make
    them floats), text exactly (7234567890123456789, never 7.234567890123457e+18)."""
    missing = [v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v) for v in values]
    if pa.types.is_integer(kind):
        return pd.array([None if m else int(v) for v, m in zip(values, missing)], dtype="Int64")
    if pa.types.is_boolean(kind):
        return pd.array([None if m else bool(v) for v, m in zip(values, missing)], dtype="boolean")
    if pa.types.is_string(kind):
        return [None if m else str(v) for v, m in zip(values, missing)]
    return [None if m else v for v, m in zip(values, missing)]


def huggingface_metadata(schema: pa.Schema, label_names: list[str]) -> dict[bytes, bytes]:
    """The `datasets` features in the schema metadata `datasets` reads: `label` and `gold_label` load as ClassLabel.
    Spelled out so that the labeling job need not import `datasets`."""
    classes = {"names": list(label_names), "_type": "ClassLabel"}
    features = {field.name: classes for field in schema if field.name in ("label", "gold_label")}
    if not (features and label_names):
        return {}
    return {b"huggingface": json.dumps({"info": {"features": features}}, ensure_ascii=False).encode()}


def parts_directory(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def inputs_directory(output: Path) -> Path:
    """Where the inputs' Parquet copies (spreadsheets) live while a labeling run needs them."""
    return output.with_name(output.name + ".inputs")


def check_output_free(output: Path, overwrite: bool, settings: dict) -> None:
    """Before any model work: an existing output is replaced only with --overwrite, unless it was written with these
    `settings` (those known before the model loads): it may be complete, and a re-run a no-op (`is_complete`)."""
    if not output.exists() or overwrite or parts_directory(output).exists():
        return
    recorded = recorded_job(output)
    if recorded is None:  # not a labeling job's output, or one written before settings were kept
        raise UserError(f"{output} already exists; pass --overwrite to replace it.")
    changed = _changed({key: recorded.get(key) for key in settings}, settings)
    if changed:
        raise UserError(
            f"{output} already exists, labeled with other settings (changed: {changed}); pass --overwrite to replace "
            "it, or another --output."
        )


def _changed(old: dict, new: dict) -> str:
    """The keys whose values differ, sorted and comma-separated."""
    return ", ".join(sorted(key for key in {**new, **old} if old.get(key) != new.get(key)))


def recorded_job(output: Path) -> dict | None:
    """The settings a finished output was made with (the `job` of its metadata), or None."""
    try:
        return json.loads(pq.read_schema(output).metadata[METADATA_KEY])["job"]
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None


def is_complete(output: Path, job: dict) -> bool:
    """The output is merged and verified, and was made with exactly these settings: a re-run has nothing to do."""
    return output.is_file() and not parts_directory(output).exists() and recorded_job(output) == job


class PartStore:
    """`<output>.parts/part-NNNNN.parquet` + `part-NNNNN.done` for each finished chunk, and `job.json` naming the
    settings they were made with. A part counts only once its `.done` record exists."""

    def __init__(self, output: Path, schema: pa.Schema):
        self.output, self.schema = output, schema
        self.directory = parts_directory(output)

    def _part(self, chunk: int) -> Path:
        return self.directory / f"part-{chunk:05d}.parquet"

    def _done(self, chunk: int) -> Path:
        return self.directory / f"part-{chunk:05d}.done"

    def prepare(self, job: dict, overwrite: bool) -> bool:
        """Main process only: refuse to clobber, or to resume parts made with other settings. False: an earlier run
        with these settings merged and verified the output (stopped while removing its parts), nothing is left to do."""
        record = self.directory / "job.json"
        earlier = json.loads(record.read_text()) if record.is_file() else {}
        same = earlier == job
        for stale in self.output.parent.glob(f".{self.output.name}.*.tmp"):  # merges killed midway
            stale.unlink(missing_ok=True)
        if self.output.exists() and not overwrite:
            if same:
                shutil.rmtree(self.directory)
                return False
            recorded = recorded_job(self.output) or {}
            changed = _changed(recorded, job) if recorded else ""
            detail = f", labeled with other settings (changed: {changed})" if changed else ""
            raise UserError(f"{self.output} already exists{detail}; pass --overwrite to replace it.")
        if self.directory.exists() and not same:
            if not overwrite:
                raise UserError(
                    f"{self.directory} holds unfinished parts of a labeling run with other settings (changed: "
                    f"{_changed(earlier, job)}); pass --overwrite to discard them, or re-run with the original "
                    "arguments to finish that run."
                )
            shutil.rmtree(self.directory)
        finished = sorted(self.directory.glob("part-*.parquet")) if self.directory.exists() else []
        if finished and pq.read_schema(finished[0]).remove_metadata() != self.schema.remove_metadata():
            raise UserError(
                f"{self.directory} holds parts written with other column types (by an older version of the job): "
                "pass --overwrite to label the input again."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        if not record.is_file():
            with atomic_path(record) as tmp:
                tmp.write_text(json.dumps(job, indent=2, ensure_ascii=False))
        return True

    def is_done(self, chunk: int) -> bool:
        return self._done(chunk).is_file() and self._part(chunk).is_file()

    def done_records(self) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.directory.glob("part-*.done"))]

    def write(self, chunk: int, frame: pd.DataFrame, record: dict) -> None:
        """Temp name, fsync, rename; then the completion record. A kill at any point leaves no part that counts."""
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        part, done = self._part(chunk), self._done(chunk)
        # _fsync, not atomic_path(fsync=True): the fault tests stop a job at this very call.
        try:
            with atomic_path(part, tmp_name=_tmp_name(part)) as tmp:
                pq.write_table(table, tmp)
                _fsync(tmp)
            with atomic_path(done, tmp_name=f"{done.stem}.{os.getpid()}.tmp") as tmp:
                tmp.write_text(json.dumps({"chunk": chunk, "rows": len(frame), **record}))
                _fsync(tmp)
        except OSError as error:
            raise UserError(
                f"Could not write {part}: {error.strerror or error}. Free space and re-run to resume."
            ) from None

    def merge(
        self,
        num_chunks: int,
        num_rows: int,
        metadata: dict,
        finished_on: dict[int, str] | None = None,
        wait_seconds: float = MERGE_WAIT_S,
    ) -> None:
        """The parts concatenated in chunk order into the output, verified, and only then deleted. Parts of chunks
        `finished_on` other nodes are waited for up to `wait_seconds` (a network filesystem shows them late)."""
        missing = self._wait_for_parts(num_chunks, finished_on or {}, wait_seconds)
        if missing:
            raise UserError(f"Cannot merge: chunks {missing[:10]} of {num_chunks} are not finished; re-run to finish.")
        schema = self._merged_schema(num_chunks, metadata)
        with atomic_path(self.output, tmp_name=_tmp_name(self.output)) as tmp:
            merged = self._concatenate(num_chunks, schema, tmp)
            if merged != num_rows:
                raise UserError(f"The merged output has {merged} rows but the input has {num_rows}.")
            written = pq.ParquetFile(tmp).metadata.num_rows
            if written != num_rows:
                raise UserError(f"Verification failed: {tmp} holds {written} rows, expected {num_rows}.")
            _fsync(tmp)
        shutil.rmtree(self.directory)

    def _merged_schema(self, num_chunks: int, metadata: dict) -> pa.Schema:
        """The parts' schema with the output's metadata: provenance, the settings (is_complete), `datasets` features."""
        metadata = {**metadata, "job": json.loads((self.directory / "job.json").read_text())}
        # Keep the parts' pandas metadata, or nullable int columns (label, gold_label) read back as float64.
        part_metadata = (pq.read_schema(self._part(0)).metadata or {}) if num_chunks else {}
        pandas_metadata = {key: value for key, value in part_metadata.items() if key == b"pandas"}
        names = [label["name"] for label in metadata.get("labels", [])]
        return self.schema.with_metadata(
            {
                **pandas_metadata,
                **huggingface_metadata(self.schema, names),
                METADATA_KEY: json.dumps(metadata, ensure_ascii=False).encode(),
            }
        )

    def _concatenate(self, num_chunks: int, schema: pa.Schema, tmp: Path) -> int:
        """The parts, in chunk order, into `tmp`, each checked to continue the row ids; returns the rows written."""
        expected_id = 0
        with pq.ParquetWriter(tmp, schema) as writer:
            for chunk in range(num_chunks):
                table = pq.read_table(self._part(chunk), schema=self.schema)
                row_ids = table.column("row_id").to_numpy()
                if (row_ids != np.arange(expected_id, expected_id + len(row_ids))).any():
                    raise UserError(f"{self._part(chunk)}: row ids are not contiguous from {expected_id}.")
                expected_id += len(row_ids)
                writer.write_table(table.replace_schema_metadata(schema.metadata))
        return expected_id

    def _wait_for_parts(self, num_chunks: int, finished_on: dict[int, str], wait_seconds: float) -> list[int]:
        """The chunks not finished here, after waiting for those finished elsewhere (never seen: an unshared folder)."""
        missing = [chunk for chunk in range(num_chunks) if not self.is_done(chunk)]
        deadline = time.monotonic() + wait_seconds
        while any(chunk in finished_on for chunk in missing) and time.monotonic() < deadline:
            time.sleep(0.5)
            # Reading the directory again makes an NFS client revalidate it, and with it cached "no such file" answers.
            os.listdir(self.directory)
            missing = [chunk for chunk in missing if not self.is_done(chunk)]
        unseen = [chunk for chunk in missing if chunk in finished_on]
        if unseen:
            nodes = sorted({finished_on[chunk] for chunk in unseen})
            raise UserError(
                f"Cannot merge: chunks {unseen[:10]} were finished on node(s) {', '.join(nodes)}, but their parts are "
                f"not in {self.directory} on {socket.gethostname()} after {wait_seconds:.0f} s: the output directory "
                "is not shared by the nodes. Put --output on a filesystem every node mounts and re-run."
            )
        return missing


def _tmp_name(path: Path) -> str:
    """A part's or the merged output's temporary name: what PartStore.prepare removes after a killed merge."""
    return f".{path.name}.{os.getpid()}.tmp"


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def read_metadata(path: Path) -> dict:
    """The run's provenance stored in the Parquet footer (label schema, model, folds, code revision, time)."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])
