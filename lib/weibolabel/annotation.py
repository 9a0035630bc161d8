"""The annotation loop: pick the comments a model is least sure about for people to label, write them in the
annotators' spreadsheet format, and merge the filled-in sheet back into the training file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.errors import UserError
from weibolabel.labeled import clean_text, group_key, label_cell_writer, parse_label, validate_labeled
from weibolabel.labeling import is_blank
from weibolabel.labels import LabelSchema
from weibolabel.parquet_io import read_metadata
from weibolabel.tables import read_table, require_column, write_xlsx

ANNOTATION_SHEET, LABELS_SHEET = "Sheet1", "labels"
REFERENCE_COLUMNS = ["predicted_label", "predicted_name", "confidence", "row_id"]
METHODS = ("margin", "entropy", "disagreement")
# How each row of a training file was chosen (its provenance, column SELECTION_COLUMN): rows there before the
# annotation loop, a uniform random sample, or the model's least certain rows. Only the first two leave the
# out-of-fold confusion rates an honest measurement of the corpus' (docs/statistics.md, label shift).
SELECTION_COLUMN = "selection"
MODEL_FREE_SELECTIONS = ("original", "random")


# ------------------------------------------------------------------------------------------------- reading
def read_labeled_parquet(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, LabelSchema]:
    """The labeling job's rows with status 'ok' (the only ones with probabilities), their probabilities
    [n, classes] and the label schema stored in the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Labeled Parquet file not found: {path}")
    try:
        schema = LabelSchema.from_list(read_metadata(path)["labels"])
    except (KeyError, TypeError):
        raise UserError(
            f"{path} has no label schema in its metadata; is it an output of jobs/label_corpus.py?"
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
    """[folds, n, classes] -> the mutual information between the prediction and the fold model (BALD): entropy of
    the mean minus mean entropy. Zero when all fold models agree, whatever their confidence."""
    return entropy(fold_probs.mean(axis=0)) - entropy(fold_probs).mean(axis=0)


def score_by_fold(run: str | Path, texts: list[str], precision: str | None = None) -> np.ndarray:
    """Probabilities of each fold model of a training run separately: [folds, n, classes] (calibrated if the run is).
    Scored in `precision` (no, fp16, bf16), by default the one the labeling job chooses on this device, so rows
    near a tie rank as they were labeled."""
    import torch

    from weibolabel.inference import encode, inference_dtype, load_ensemble, predict_probs
    from weibolabel.precision import choose_precision, device_capability

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision, _ = choose_precision(precision, device_type=device.type, compute_capability=device_capability(device))
    ensemble = load_ensemble(run, device, inference_dtype(device, precision))
    encoded = encode(ensemble.tokenizer, [clean_text(t) for t in texts], ensemble.max_length)
    pad = ensemble.tokenizer.pad_token_id
    try:
        fold_probs = [
            predict_probs([m], encoded.input_ids, pad, temperature=ensemble.temperature) for m in ensemble.models
        ]
    except torch.OutOfMemoryError:  # predict_probs raises this type for cuBLAS/cuDNN exhaustion too
        raise UserError(
            f"Out of GPU memory scoring {len(texts)} comments with each fold model of {run}: lower --pool_factor "
            "(fewer comments are re-scored), or free the GPU."
        ) from None
    return np.stack(fold_probs).astype(np.float64)


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
    """K rows, most uncertain first, with every predicted class represented and near-duplicates left out.

    `class_quota` of K is reserved in equal parts for the most uncertain rows of each predicted class (at least one
    each), so a frequent class cannot crowd out a rare one; the rest goes to the most uncertain rows overall.
    Among rows sharing a `group_key` (copies that differ in case, width, spacing, punctuation or emoji) only the
    most uncertain can be picked (texts already labeled are removed beforehand by `drop_known`).
    """
    if k < 1:
        raise UserError("--k must be at least 1.")
    if not 0 <= class_quota <= 1:
        raise UserError("--class_quota must be between 0 and 1.")
    pool = frame.assign(uncertainty=scores, group=[group_key(clean_text(t)) for t in frame["text"]])
    counts = {"candidates": len(pool)}
    pool = pool.sort_values(["uncertainty", "row_id"], ascending=[False, True], kind="stable")
    before = len(pool)
    pool = pool.drop_duplicates("group", keep="first")
    counts["near_duplicates_skipped"] = before - len(pool)
    if len(pool) < k:
        raise UserError(f"Only {len(pool)} distinct candidate rows remain (of {counts['candidates']}); lower --k.")
    classes = sorted(pool["label"].astype(int).unique())
    if k < len(classes):
        raise UserError(f"--k {k} is smaller than the {len(classes)} predicted classes; each needs a place.")

    per_class = max(1, int(k * class_quota) // len(classes))
    chosen, reason = [], {}
    for label in classes:
        for index in pool.index[pool["label"] == label][:per_class]:
            chosen.append(index)
            reason[index] = "class quota"
    for index in pool.index:
        if len(chosen) >= k:
            break
        if index not in reason:
            chosen.append(index)
            reason[index] = "most uncertain"
    chosen = chosen[:k] if len(chosen) > k else chosen  # quota alone can exceed k only when k < 2 * classes
    picked = pool.loc[chosen].assign(reason=[reason[i] for i in chosen])
    picked.attrs["counts"] = counts
    return picked.sort_values("row_id").reset_index(drop=True)


def select_random(frame: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """K rows drawn uniformly without replacement from all rows of `frame` (the ok rows), in row_id order.

    Nothing is filtered (no near-copies, no already-labeled texts): the sample must stay uniform over the corpus, or
    the shares estimated from it (PPI) would be biased. The draw depends only on the row count, K and the seed."""
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
    """Sheet 1: `Sentence`, an empty `Label`, the model's guess for reference and how the row was chosen
    (`selection`: 'uncertainty' or 'random', carried into the training file by the merge); sheet 2: the label
    schema. Without `show_predictions` the guess is left out (only `row_id` stays): a gold sample must not be
    anchored on the model's answer, or its errors would look smaller than they are."""
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
    write_workbook(
        path=path,
        sheet=sheet,
        schema=schema,
        widths={
            "Sentence": 60,
            "Label": 8,
            "predicted_label": 15,
            "predicted_name": 15,
            "confidence": 11,
            "selection": 11,
        },
        choices=schema.names if schema.number_names else [str(i) for i in range(len(schema))],
        choice_column="Label",
    )


def write_workbook(
    *,
    path: Path,
    sheet: pd.DataFrame,
    schema: LabelSchema,
    widths: dict[str, int],
    choices: list[str],
    choice_column: str,
) -> None:
    """The annotators' workbook, written by tables.write_xlsx (texts stay text): `sheet` as the first sheet (header
    row frozen, columns as wide as `widths` says, 9 otherwise) with a drop-down of `choices` on its empty
    `choice_column` (other values are still accepted: the merge reads them), and the label schema as the second."""
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
def schema_from_sheet(path: Path) -> LabelSchema | None:
    """The label schema written into the annotation file's `labels` sheet, if it has one."""
    if LABELS_SHEET not in workbook_sheets(path):
        return None
    items = read_table(path, sheet=LABELS_SHEET).dropna(how="all")
    if not {"id", "name"} <= set(items.columns):
        raise UserError(f"{path}: sheet '{LABELS_SHEET}' needs columns 'id', 'name' (and 'description').")
    return LabelSchema.from_list(items.fillna("").to_dict("records"))


def workbook_sheets(path: Path) -> list[str]:
    """The sheet names of an .xlsx/.xlsm workbook, in order; [] for other formats."""
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return []
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    names = list(workbook.sheetnames)
    workbook.close()
    return names


def read_annotations(
    path: Path, schema: LabelSchema, sheet: str | None = None, encoding: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labeled rows of a filled-in sheet, validated by `load_labeled`, each with `extra`: its values in the
    sheet's other columns (not the model's reference columns). Rows still without a label are listed in the issues
    and skipped. They are blanked (not removed) before validation so every error names the row as the annotator's
    spreadsheet numbers it."""
    frame = read_table(path, sheet=sheet, encoding=encoding)
    require_column(frame, "Sentence", path, "(the annotation sheet's text column)")
    require_column(frame, "Label", path, "(the annotation sheet's label column)")
    blank = np.array([is_blank(v) for v in frame["Label"]], dtype=bool)
    if blank.all():
        raise UserError(f"{path}: no row has a label yet; fill in the 'Label' column first.")
    to_check = frame[["Sentence", "Label"]].astype(object).copy()
    to_check.loc[blank, "Sentence"], to_check.loc[blank, "Label"] = "", 0  # dropped as empty text, row kept
    data = validate_labeled(to_check, path, schema, text_column="Sentence", label_column="Label", sheet=sheet)
    blank_rows = {f"row {i + 2}" for i in np.flatnonzero(blank)}
    issues = data.issues.copy()
    unlabeled = issues["row"].isin(blank_rows)
    issues.loc[unlabeled, ["column", "issue", "action"]] = ["Label", "no label given", "skipped"]
    # The annotators' own columns (who labeled, a note) travel with each row; the model's guess does not. Each row
    # carries how it was chosen, so the analysis can tell model-chosen rows from the rest.
    own = [c for c in frame.columns if c not in ("Sentence", "Label", *REFERENCE_COLUMNS)]
    chosen = sheet_selection(frame)
    rows = data.rows.assign(
        extra=[
            {SELECTION_COLUMN: chosen[i], **{c: v for c, v in frame.loc[i, own].items() if not is_blank(v)}}
            for i in data.rows["row_id"]
        ],
        sentence=frame["Sentence"].to_numpy(dtype=object)[data.rows["row_id"].to_numpy()],  # the text as written
    )
    return rows, issues


def sheet_selection(frame: pd.DataFrame) -> list[str]:
    """How each row of an annotation sheet was chosen: its `selection` cell, else what the sheet's make-up says
    (select_for_annotation wrote the model's guess beside uncertain rows, and only row_id beside a random sample);
    'unknown' for a sheet made by hand."""
    if "predicted_label" in frame.columns:
        inferred = "uncertainty"
    elif "row_id" in frame.columns:
        inferred = "random"
    else:
        inferred = "unknown"
    cells = frame[SELECTION_COLUMN] if SELECTION_COLUMN in frame.columns else [None] * len(frame)
    return [inferred if is_blank(v) else str(v).strip() for v in cells]


def merge_annotations(
    existing: pd.DataFrame,
    existing_labels: list[int],
    new_rows: pd.DataFrame,
    schema: LabelSchema,
    *,
    text_column: str,
    label_column: str,
    prefer: str = "existing",
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The existing file as it is (every column, in place) + annotated rows whose normalised text is new, which fill
    the text and label columns and any column they share with it (a column only the sheet has is added at the
    end). A text already in the existing file with the same label is skipped as known; with another label it is a
    conflict, left out unless `prefer == 'new'`, which relabels the existing copies instead. Labels are written as
    the existing column writes them: names if it holds names, ids otherwise."""
    if prefer not in ("existing", "new"):
        raise UserError("--prefer must be 'existing' or 'new'.")
    combined = existing.copy()
    as_cell = label_cell_writer(existing[label_column], schema)
    normalised = pd.Series([clean_text(t) for t in existing[text_column]], index=existing.index)
    known: dict[str, set[int]] = {}
    for text, label in zip(normalised, existing_labels):
        if text and label is not None:
            known.setdefault(text, set()).add(int(label))
    extras = new_rows["extra"] if "extra" in new_rows else [{}] * len(new_rows)
    # The text is added as the sheet has it, as the existing rows are kept (matching above is on normalised texts).
    written = new_rows["sentence"] if "sentence" in new_rows else new_rows["text"]
    added, conflicts, counts = [], [], {"already_known": 0, "conflicts": 0, "relabeled_existing_rows": 0}
    rows = zip(new_rows["row"], new_rows["text"], new_rows["label"], extras, written)
    for row, text, label, extra, as_written in rows:
        label = int(label)
        if text not in known:
            own = {c: v for c, v in extra.items() if c not in (text_column, label_column)}
            added.append({**own, text_column: as_written, label_column: as_cell(label)})
        elif known[text] == {label}:
            counts["already_known"] += 1
        else:
            copies = normalised.index[normalised == text]
            conflicts.append(
                _conflict(text, copies=copies, known=known[text], row=row, label=label, schema=schema, prefer=prefer)
            )
            if prefer == "new":
                combined[label_column] = combined[label_column].astype(object)  # an int column may take a name
                combined.loc[copies, label_column] = as_cell(label)
                counts["relabeled_existing_rows"] += len(copies)
    counts["conflicts"] = len(conflicts)
    counts["added"] = len(added)
    new_columns = sorted({c for row in added for c in row} - set(existing.columns))
    counts["columns_added"] = new_columns
    if added:
        combined = _append_rows(combined, added, new_columns)
    if SELECTION_COLUMN in combined.columns:  # rows the file held before the loop recorded provenance
        before = combined.index < len(existing)
        blank = np.array([is_blank(v) for v in combined[SELECTION_COLUMN]], dtype=bool)
        combined[SELECTION_COLUMN] = combined[SELECTION_COLUMN].astype(object)
        combined.loc[before & blank, SELECTION_COLUMN] = "original"
    counts["added_by_selection"] = dict(Counter(row.get(SELECTION_COLUMN, "unknown") for row in added))
    columns = ["text", "existing_rows", "existing_label", "annotation_row", "new_label", "resolution"]
    return combined, pd.DataFrame(conflicts, columns=columns), counts


def _conflict(
    text: str, *, copies: pd.Index, known: set[int], row: str, label: int, schema: LabelSchema, prefer: str
) -> dict:
    """One line of the conflicts table: an annotated text the existing file holds under another label."""
    return {
        "text": text,
        "existing_rows": ", ".join(f"row {i + 2}" for i in copies),
        "existing_label": ", ".join(schema.names[i] for i in sorted(known)),
        "annotation_row": row,
        "new_label": schema.names[label],
        "resolution": "new label kept, existing rows relabeled" if prefer == "new" else "left out",
    }


def _append_rows(combined: pd.DataFrame, added: list[dict], new_columns: list[str]) -> pd.DataFrame:
    """`combined` with the `added` rows at the end, and after its columns those only the added rows have."""
    # Integer columns stay integers where the new rows leave them empty (a CSV must not turn 12 into 12.0).
    integers = {c: "Int64" for c in combined.columns if pd.api.types.is_integer_dtype(combined[c].dtype)}
    additions = pd.DataFrame(added, columns=[*combined.columns, *new_columns])
    for column in combined.columns:  # empty cells of a typed column take its type, not object
        if additions[column].isna().all():
            additions[column] = pd.Series([None] * len(additions), dtype=integers.get(column, combined[column].dtype))
    return pd.concat([combined.astype(integers), additions], ignore_index=True)


def existing_label_ids(frame: pd.DataFrame, label_column: str, schema: LabelSchema) -> list[int | None]:
    """Label ids of the existing file's cells (names or ids; the file has passed `load_labeled`)."""
    return [parse_label(v, schema)[0] for v in frame[label_column]]
