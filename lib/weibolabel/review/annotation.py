"""The annotation loop: pick the comments a model is least sure about for people to label, write them in the
annotators' spreadsheet format, and merge the filled-in sheet back into the training file."""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.labeled import clean_text, group_key, label_cell_writer, parse_label, validate_labeled
from weibolabel.data.labels import LabelSchema, load_label_schema
from weibolabel.data.tables import read_table, require_column, unreadable_message, write_xlsx
from weibolabel.labeling.parts import read_metadata
from weibolabel.labeling.summary import is_blank
from weibolabel.run.layout import check_outputs
from weibolabel.util.errors import UserError

ANNOTATION_SHEET, LABELS_SHEET = "Sheet1", "labels"
REFERENCE_COLUMNS = ["predicted_label", "predicted_name", "confidence", "row_id"]
METHODS = ("margin", "entropy", "disagreement")
# How each training row was chosen: before the loop, at random, or by uncertainty. Only the first two leave the
# out-of-fold confusion rates an honest measurement of the corpus' (docs/statistics.md, label shift).
SELECTION_COLUMN = "selection"
MODEL_FREE_SELECTIONS = ("original", "random")


# ------------------------------------------------------------------------------------------------- reading
def read_labeled_parquet(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, LabelSchema]:
    """The labeling job's rows with status 'ok' (the only ones with probabilities), their probabilities and schema."""
    path = Path(path)
    what = "the labeled Parquet file jobs/label_corpus.py writes (its --output)"
    if path.is_dir():
        raise UserError(f"{path} is a directory; pass {what}.")
    if not path.is_file():
        raise UserError(f"Labeled Parquet file not found: {path}")
    try:
        schema = LabelSchema.from_list(read_metadata(path)["labels"])
    except (KeyError, TypeError):
        raise UserError(
            f"{path} has no label schema in its metadata; is it an output of jobs/label_corpus.py?"
        ) from None
    except Exception as error:  # not Parquet inside (pyarrow: "magic bytes not found"): a spreadsheet, or cut short
        if path.suffix.lower() == ".parquet":
            raise UserError(unreadable_message(path, error)) from None
        kind = f"a {path.suffix} file" if path.suffix else "not a Parquet file"
        raise UserError(
            f"{path} is {kind}, not {what}: label the comments with jobs/label_corpus.py and pass its output here."
        ) from None
    frame = pd.read_parquet(path)
    missing = {"row_id", "text", "label", "confidence", "probs", "status"} - set(frame.columns)
    if missing:
        raise UserError(f"{path}: columns {sorted(missing)} are missing; is it an output of jobs/label_corpus.py?")
    frame = frame[frame["status"] == "ok"].reset_index(drop=True)
    probs = np.stack(frame["probs"].to_numpy()).astype(np.float64) if len(frame) else np.zeros((0, len(schema)))
    return frame, probs, schema


# ------------------------------------------------------------------------------------------------- uncertainty
def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability: small when the model hesitates between two classes."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats (0 = certain, log(classes) = uniform)."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def fold_disagreement(fold_probs: np.ndarray) -> np.ndarray:
    """[folds, n, classes] -> mutual information between prediction and fold model (BALD): zero when all fold models
    agree, whatever their confidence."""
    return entropy(fold_probs.mean(axis=0)) - entropy(fold_probs).mean(axis=0)


def score_by_fold(run: str | Path, texts: list[str], precision: str | None = None, device: str = "auto") -> np.ndarray:
    """Each fold model's probabilities [folds, n, classes], in the labeling job's default `precision` for this device
    so rows near a tie rank as they were labeled."""
    import torch

    from weibolabel.model.inference import encode, inference_dtype, load_ensemble, predict_probs
    from weibolabel.run.device import job_device
    from weibolabel.run.precision import choose_precision, device_capability

    device = torch.device(job_device(device))
    precision, _ = choose_precision(precision, device_type=device.type, compute_capability=device_capability(device))
    ensemble = load_ensemble(run, device, inference_dtype(device, precision))
    encoded = encode(ensemble.tokenizer, [clean_text(t) for t in texts], ensemble.max_length)
    ids, pad, temperature = encoded.input_ids, ensemble.tokenizer.pad_token_id, ensemble.temperature
    try:
        fold_probs = [predict_probs([model], ids, pad, temperature=temperature) for model in ensemble.models]
    except torch.cuda.OutOfMemoryError:  # predict_probs raises this type for cuBLAS/cuDNN exhaustion too
        raise UserError(
            f"Out of GPU memory scoring {len(texts)} comments with each fold model of {run}: lower --pool_factor "
            "(fewer comments are re-scored), or free the GPU."
        ) from None
    return np.stack(fold_probs).astype(np.float64)


def disagreement_pool(
    frame: pd.DataFrame, probs: np.ndarray, model: str, size: int, device: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """The `size` distinct rows most uncertain by entropy and how much `model`'s fold models disagree on each (the
    Parquet file keeps only the ensemble's mean, so only this pool is re-scored)."""
    entropy_rank = pd.Series(entropy(probs)).sort_values(ascending=False, kind="stable")
    groups = pd.Series([group_key(clean_text(t)) for t in frame["text"]])
    pool = frame.iloc[entropy_rank.index[~groups[entropy_rank.index].duplicated()][:size]].reset_index(drop=True)
    return pool, fold_disagreement(score_by_fold(model, pool["text"].tolist(), device=device))


def uncertainty(probs: np.ndarray, method: str) -> np.ndarray:
    """Larger = less certain, for ranking."""
    if method == "margin":
        return 1.0 - margin(probs)
    if method == "entropy":
        return entropy(probs)
    raise UserError(f"Unknown uncertainty method '{method}'; use one of {list(METHODS)}.")


# ------------------------------------------------------------------------------------------------- selection
def drop_known(frame: pd.DataFrame, probs: np.ndarray, exclude_texts: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows whose text (or a near-copy of it, by `group_key`) is not among `exclude_texts` (already labeled)."""
    known = {group_key(clean_text(t)) for t in exclude_texts}
    keep = np.array([group_key(clean_text(t)) not in known for t in frame["text"]], dtype=bool)
    return frame[keep].reset_index(drop=True), probs[keep]


def select_for_annotation(frame: pd.DataFrame, scores: np.ndarray, k: int, class_quota: float = 0.5) -> pd.DataFrame:
    """The K most uncertain rows, one per `group_key` (near-copies); `class_quota` of K goes in equal parts (at least
    one each) to the most uncertain of each predicted class, so a frequent class cannot crowd out a rare one."""
    if k < 1:
        raise UserError("--k must be at least 1.")
    if not 0 <= class_quota <= 1:
        raise UserError("--class_quota must be between 0 and 1.")
    candidates = frame.assign(uncertainty=scores, group=[group_key(clean_text(t)) for t in frame["text"]])
    candidates = candidates.sort_values(["uncertainty", "row_id"], ascending=[False, True], kind="stable")
    pool = candidates.drop_duplicates("group", keep="first")
    counts = {"candidates": len(candidates), "near_duplicates_skipped": len(candidates) - len(pool)}
    if len(pool) < k:
        raise UserError(f"Only {len(pool)} distinct candidate rows remain (of {counts['candidates']}); lower --k.")
    classes = pool["label"].astype(int).nunique()
    if k < classes:
        raise UserError(f"--k {k} is smaller than the {classes} predicted classes; each needs a place.")
    # The quota takes at most k rows: per class k * class_quota // classes, or 1 where that is 0 (and classes <= k).
    quota = pool.groupby("label").head(max(1, int(k * class_quota) // classes)).index
    rest = pool.index[~pool.index.isin(quota)][: k - len(quota)]
    picked = pool.loc[quota.append(rest)]
    picked = picked.assign(reason=np.where(picked.index.isin(quota), "class quota", "most uncertain"))
    picked.attrs["counts"] = counts
    return picked.sort_values("row_id").reset_index(drop=True)


def select_random(frame: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """K rows drawn uniformly without replacement, in row_id order. Nothing is filtered (near-copies, labeled texts):
    the shares estimated from the sample (PPI) would be biased."""
    if k < 1:
        raise UserError("--k must be at least 1.")
    if k > len(frame):
        raise UserError(f"--k {k} is larger than the {len(frame)} labeled (status 'ok') rows.")
    chosen = np.random.default_rng(seed).choice(len(frame), size=k, replace=False)
    picked = frame.iloc[np.sort(chosen)].assign(reason="uniform random")
    picked.attrs["counts"] = {"candidates": len(frame), "near_duplicates_skipped": 0}
    return picked.reset_index(drop=True)


def write_annotation_sheet(
    picked: pd.DataFrame, schema: LabelSchema, path: Path, show_predictions: bool = True, selection: str = "uncertainty"
) -> None:
    """Sheet 1: `Sentence`, an empty `Label`, the model's guess, `row_id` and `selection`; sheet 2: the schema. Without
    `show_predictions` the guess is left out: a gold sample anchored on it would make its errors look smaller."""
    sheet = pd.DataFrame(
        {
            "Sentence": picked["text"].to_numpy(dtype=object),
            "Label": [None] * len(picked),
            "predicted_label": picked["label"].astype(int).to_numpy(),
            "predicted_name": [schema.names[int(i)] for i in picked["label"]],
            "confidence": picked["confidence"].astype(float).round(4).to_numpy(),
            "row_id": picked["row_id"].astype(int).to_numpy(),
            SELECTION_COLUMN: selection,
        }
    )
    if not show_predictions:
        sheet = sheet.drop(columns=["predicted_label", "predicted_name", "confidence"])
    # A drop-down of the valid ids (of the names, where names are numbers and a number is read as a name); typing
    # a name is still accepted by the merge (parse_label reads both).
    widths = {
        "Sentence": 60,
        "Label": 8,
        "predicted_name": 15,
        "predicted_label": 15,
        "confidence": 11,
        "selection": 11,
    }
    choices = schema.names if schema.number_names else [str(i) for i in range(len(schema))]
    write_workbook(path, sheet, schema, widths, choices, choice_column="Label")


def write_workbook(
    path: Path, sheet: pd.DataFrame, schema: LabelSchema, widths: dict[str, int], choices: list[str], choice_column: str
) -> None:
    """The annotators' workbook: `sheet` first (header frozen, `widths`, 9 otherwise) with a drop-down of `choices`
    on `choice_column` (other values are still accepted), the label schema second."""
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    labels = pd.DataFrame(schema.to_list(), columns=["id", "name", "description"])

    def decorate(workbook) -> None:
        worksheet = workbook[ANNOTATION_SHEET]
        worksheet.freeze_panes = "A2"
        for column, name in enumerate(sheet.columns, start=1):
            worksheet.column_dimensions[get_column_letter(column)].width = widths.get(name, 9)
        drop_down = DataValidation(type="list", formula1='"' + ",".join(choices) + '"', showErrorMessage=False)
        worksheet.add_data_validation(drop_down)
        if len(sheet):
            letter = get_column_letter(list(sheet.columns).index(choice_column) + 1)
            drop_down.add(f"{letter}2:{letter}{len(sheet) + 1}")
        workbook[LABELS_SHEET].column_dimensions["C"].width = 80

    # A cut text is what the annotators see and label, and what the merge adds: the model reads far less of it.
    if_cut = "the annotators see and label the start, which is what merging adds"
    write_xlsx(path, {ANNOTATION_SHEET: sheet, LABELS_SHEET: labels}, decorate, if_cut)


# ------------------------------------------------------------------------------------------------- merging
def check_destination(job: str, output: Path, beside: list[str], reads: dict, original: str, overwrite: bool) -> bool:
    """Checks where `output` and the files `<output stem>_<beside>` go; True when it is the input of option
    `original`, which only --overwrite replaces (and the job copies aside first)."""
    side_files = [Path(f"{output.with_suffix('')}_{name}") for name in beside]
    writes = {"--output": output, "--output (beside it)": side_files}
    check_outputs(job, reads=reads, writes=writes, replaceable=original)
    replaces = output.resolve() == Path(reads[original]).resolve()
    if output.exists() and not overwrite:
        raise UserError(
            f"{output} is the {original} file; pass --overwrite as well to replace it (a backup copy is written "
            "first), or name a new --output."
            if replaces
            else f"{output} already exists; pass --overwrite to replace it."
        )
    return replaces


def sheet_schema(path: Path, labels: str | None) -> LabelSchema:
    """The --labels schema if given, else the one in the workbook's `labels` sheet, else the default."""
    if labels or LABELS_SHEET not in workbook_sheets(path):
        return load_label_schema(labels)
    items = read_table(path, sheet=LABELS_SHEET).dropna(how="all")
    if not {"id", "name"} <= set(items.columns):
        raise UserError(f"{path}: sheet '{LABELS_SHEET}' needs columns 'id', 'name' (and 'description').")
    return LabelSchema.from_list(items.fillna("").to_dict("records"))


def workbook_sheets(path: Path) -> list[str]:
    """The sheet names of an .xlsx/.xlsm workbook, in order; [] for other formats."""
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return []
    import openpyxl

    with closing(openpyxl.load_workbook(path, read_only=True)) as workbook:
        return list(workbook.sheetnames)


def read_annotations(path: Path, schema: LabelSchema, encoding: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labeled rows of a filled-in sheet, validated, each with `extra` (its other columns, not the model's) and
    `sentence` (the text as written); rows without a label are skipped and listed in the issues."""
    frame = read_table(path, encoding=encoding)
    require_column(frame, "Sentence", path, "(the annotation sheet's text column)")
    require_column(frame, "Label", path, "(the annotation sheet's label column)")
    blank = np.array([is_blank(v) for v in frame["Label"]], dtype=bool)
    if blank.all():
        raise UserError(f"{path}: no row has a label yet; fill in the 'Label' column first.")
    # Blanked, not removed, so every error names the row as the annotator's spreadsheet numbers it.
    to_check = frame[["Sentence", "Label"]].astype(object).copy()
    to_check.loc[blank, "Sentence"], to_check.loc[blank, "Label"] = "", 0  # dropped as empty text, row kept
    data = validate_labeled(to_check, path, schema, text_column="Sentence", label_column="Label")
    issues = data.issues.copy()
    unlabeled = issues["row"].isin({f"row {i + 2}" for i in np.flatnonzero(blank)})
    issues.loc[unlabeled, ["column", "issue", "action"]] = ["Label", "no label given", "skipped"]
    # How each row was chosen, so the analysis can tell model-chosen rows from the rest: its `selection` cell, else
    # the sheet's make-up (the model's guess beside uncertain rows, only row_id beside a random sample).
    inferred = "uncertainty" if "predicted_label" in frame else "random" if "row_id" in frame else "unknown"
    chosen = [inferred if is_blank(v) else str(v).strip() for v in frame.get(SELECTION_COLUMN, [None] * len(frame))]
    # The annotators' own columns (who labeled, a note) travel with each row; the model's guess does not.
    own = [c for c in frame.columns if c not in ("Sentence", "Label", *REFERENCE_COLUMNS)]
    rows = data.rows.assign(
        extra=[
            {SELECTION_COLUMN: chosen[i], **{c: v for c, v in frame.loc[i, own].items() if not is_blank(v)}}
            for i in data.rows["row_id"]
        ],
        sentence=frame["Sentence"].to_numpy(dtype=object)[data.rows["row_id"].to_numpy()],
    )
    return rows, issues


def merge_annotations(
    existing: pd.DataFrame,
    new_rows: pd.DataFrame,
    schema: LabelSchema,
    *,
    text_column: str,
    label_column: str,
    prefer: str = "existing",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The existing file as it is + the annotated rows whose normalised text is new (columns only the sheet has go at
    the end); a text known under another label is a conflict, left out unless `prefer == 'new'` relabels the copies."""
    if prefer not in ("existing", "new"):
        raise UserError("--prefer must be 'existing' or 'new'.")
    combined = existing.copy()
    as_cell = label_cell_writer(existing[label_column], schema)  # names stay names, ids stay ids
    normalised = pd.Series([clean_text(t) for t in existing[text_column]], index=existing.index)
    known: dict[str, set[int]] = {}
    for text, cell in zip(normalised, existing[label_column]):
        label = parse_label(cell, schema)[0]
        if text and label is not None:
            known.setdefault(text, set()).add(label)
    added, conflicts, already_known, relabeled = [], [], 0, 0
    resolution = "new label kept, existing rows relabeled" if prefer == "new" else "left out"
    # The text is added as the sheet has it, as the existing rows are kept (matching is on normalised texts).
    fields = ["row", "text", "label", "extra", "sentence"]
    for row, text, label, extra, as_written in new_rows[fields].itertuples(index=False):
        label = int(label)
        if text not in known:
            own = {c: v for c, v in extra.items() if c not in (text_column, label_column)}
            added.append({**own, text_column: as_written, label_column: as_cell(label)})
        elif known[text] == {label}:
            already_known += 1
        else:
            copies = normalised.index[normalised == text]
            existing_rows = ", ".join(f"row {i + 2}" for i in copies)
            existing_label = ", ".join(schema.names[i] for i in sorted(known[text]))
            conflicts.append((text, existing_rows, existing_label, row, schema.names[label], resolution))
            if prefer == "new":
                combined[label_column] = combined[label_column].astype(object)  # an int column may take a name
                combined.loc[copies, label_column] = as_cell(label)
                relabeled += len(copies)
    new_columns = sorted({c for row in added for c in row} - set(existing.columns))
    if added:
        combined = _append_rows(combined, added, new_columns)
    combined[label_column] = _labels_of_one_type(combined[label_column])
    if SELECTION_COLUMN in combined.columns:  # rows the file held before the loop recorded provenance
        before = combined.index < len(existing)
        blank = np.array([is_blank(v) for v in combined[SELECTION_COLUMN]], dtype=bool)
        combined[SELECTION_COLUMN] = combined[SELECTION_COLUMN].astype(object)
        combined.loc[before & blank, SELECTION_COLUMN] = "original"
    counts = {
        "already_known": already_known,
        "conflicts": len(conflicts),
        "relabeled_existing_rows": relabeled,
        "added": len(added),
        "columns_added": new_columns,
        "added_by_selection": dict(Counter(row.get(SELECTION_COLUMN, "unknown") for row in added)),
    }
    columns = ["text", "existing_rows", "existing_label", "annotation_row", "new_label", "resolution"]
    return combined, pd.DataFrame(conflicts, columns=columns), counts


def _labels_of_one_type(column: pd.Series) -> pd.Series:
    """The label column with every cell text once any cell is text (a CSV's cells, names), so a Parquet file can hold
    it: training reads 1, 1.0 and '1' as the same label (parse_label); a column of numbers stays numbers."""
    filled = [value for value in column if not is_blank(value)]
    if all(isinstance(value, str) for value in filled) or not any(isinstance(value, str) for value in filled):
        return column

    def as_text(value):
        if is_blank(value) or isinstance(value, str):
            return value
        whole = isinstance(value, float | np.floating) and float(value).is_integer()  # Excel's 1.0 is the id 1
        return str(int(value)) if whole else str(value)

    return column.astype(object).map(as_text)


def _append_rows(combined: pd.DataFrame, added: list[dict], new_columns: list[str]) -> pd.DataFrame:
    """`combined` with the `added` rows at the end, and after its columns those only the added rows have."""
    # Integer columns stay integers where the new rows leave them empty (a CSV must not turn 12 into 12.0).
    integers = {c: "Int64" for c in combined.columns if pd.api.types.is_integer_dtype(combined[c].dtype)}
    additions = pd.DataFrame(added, columns=[*combined.columns, *new_columns])
    for column in combined.columns:  # empty cells of a typed column take its type, not object
        if additions[column].isna().all():
            additions[column] = pd.Series([None] * len(additions), dtype=integers.get(column, combined[column].dtype))
    return pd.concat([combined.astype(integers), additions], ignore_index=True)
