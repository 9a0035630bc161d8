"""What the shares rest on besides the labeled file: the run's out-of-fold predictions (only the rows chosen
without a model, unless told otherwise), whether the file was labeled by that run, and the random gold sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.labeled import clean_text, parse_label
from weibolabel.data.tables import read_table, require_column
from weibolabel.run.layout import RunLayout, read_out_of_fold
from weibolabel.stats.shares import calibrated
from weibolabel.util.errors import UserError


def check_labeled_by_run(metadata: dict, run: str | Path, source: Path) -> str:
    """Refuse a file labeled by another model than the run's fold ensemble, which its out-of-fold rates describe;
    a warning ('' if none) when only the path differs (a run moved) but the name and the fold members agree."""
    run = Path(run)
    model, members = metadata.get("model"), list(metadata.get("members") or [])
    expected = [f"fold_{k}" for k in range(_num_folds(run))]
    if model is None:
        return f"{source} does not say which model labeled it; taken to be the run {run}"
    labeled_by = Path(str(model))
    inside = labeled_by.resolve().parent == run.resolve() or members == ["."]
    if inside or (members != expected and labeled_by.name.startswith("fold_")):
        raise UserError(
            f"{source} was labeled by one fold model ({model}), not by the fold ensemble of {run}: the run's "
            "out-of-fold rates describe the ensemble's probabilities. Label the corpus with the run directory "
            f"(jobs/label_corpus.py --model {run}), or analyse it without --run."
        )
    if labeled_by.resolve() == run.resolve() and members == expected:
        return ""
    if labeled_by.name == run.name and members == expected:
        return f"{source} was labeled by {model}, taken to be the run {run} (same name and folds; it was moved?)"
    raise UserError(
        f"{source} was labeled by {model} (checkpoints {members}), not by the run {run} (folds {expected}): another "
        "run's confusion rates do not describe this file's labels. Pass the run that labeled it as --run, or label "
        f"the corpus with this one (jobs/label_corpus.py --model {run})."
    )


def _num_folds(run: Path) -> int:
    layout = RunLayout(run)
    folds = json.loads(layout.metrics.read_text()).get("folds") if layout.metrics.is_file() else None
    return len(folds) if folds else int(_run_settings(layout).get("num_folds", 0))


def _run_settings(layout: RunLayout) -> dict:
    """The run's config.yaml, {} without one."""
    import yaml

    return (yaml.safe_load(layout.config.read_text()) or {}) if layout.config.is_file() else {}


def training_selection(run: Path, oof: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """How each out-of-fold row was chosen (the training file's `selection` column, written by merge_annotations),
    read from the training file the run's config.yaml names; (None, why) when it cannot be known."""
    from weibolabel.review.annotation import SELECTION_COLUMN

    layout = RunLayout(run)
    settings = _run_settings(layout)
    data = settings.get("data")
    if not data:
        return None, f"{layout.config} does not name the training file"
    where = {k: settings.get(k) for k in ("sheet", "encoding", "split")}
    try:
        table = read_table(data, header_row=int(settings.get("header_row") or 1), **where)
    except UserError as error:
        return None, f"the training file could not be read ({error})"
    if SELECTION_COLUMN not in table.columns:
        return None, f"the training file {data} has no '{SELECTION_COLUMN}' column (written by merge_annotations.py)"
    row_ids = oof["row_id"].to_numpy(dtype=np.int64)  # read_out_of_fold guarantees the column
    text_column = settings.get("text_column", "Sentence")
    if row_ids.max(initial=-1) >= len(table) or text_column not in table.columns:
        return None, f"the training file {data} no longer matches the run's rows"
    texts = table[text_column].astype(str).to_numpy()[row_ids]
    if any(clean_text(a) != clean_text(str(b)) for a, b in zip(texts, oof["text"])):
        return None, f"the training file {data} has changed since the run (its texts differ at the run's rows)"
    values = table[SELECTION_COLUMN].to_numpy(dtype=object)[row_ids]
    return np.array(["original" if pd.isna(v) or not str(v).strip() else str(v).strip() for v in values]), ""


def read_run_predictions(
    run: str | Path, names: list[str], temperature: float, confusion_rows: str = "model_free"
) -> tuple[dict | None, str]:
    """The run's out-of-fold gold labels, predictions and probabilities recalibrated with `temperature` (the labeling
    job's, so both sides are scored alike); with `confusion_rows` 'model_free' only rows chosen without a model.
    (None, why) when the run cannot adjust this file's shares (another schema, a class without rows)."""
    from weibolabel.review.annotation import MODEL_FREE_SELECTIONS

    oof, run_names = read_out_of_fold(run)
    if run_names != list(names):
        return None, (
            f"the run {run} was trained on the classes {run_names}, the file is labeled with {list(names)}: its "
            "confusion rates do not apply, so only naive shares are reported"
        )
    selection, unknown = training_selection(run, oof)
    if selection is None:
        provenance = f"how the rows were chosen is not recorded ({unknown}): all are taken as chosen without a model"
        selection = np.full(len(oof), "original", dtype=object)
    else:
        provenance = "from the training file's 'selection' column"
    keep = np.isin(selection, MODEL_FREE_SELECTIONS) if confusion_rows == "model_free" else np.ones(len(oof), bool)
    left_out = {str(k): int(v) for k, v in pd.Series(selection[~keep]).value_counts().items()}
    oof = oof[keep].reset_index(drop=True)
    absent = [n for i, n in enumerate(names) if not (oof["gold"] == i).any()]
    if absent:
        return (
            None,
            f"the run {run} has no labeled row of {absent} among the rows used, so their error rates are unknown",
        )
    probs = oof[[f"prob_{n}" for n in names]].to_numpy(dtype=np.float64)
    gold = oof["gold"].to_numpy(dtype=np.int64)
    return {
        "gold": gold,
        "predicted": probs.argmax(axis=1),
        "probs": calibrated(probs, temperature),
        "texts": oof["text"].astype(str).tolist(),
        "rows_used": int(keep.sum()),
        "rows_total": len(keep),
        "left_out": left_out,
        "provenance": provenance,
        "confusion_rows": confusion_rows,
    }, ""


def read_gold_sample(path: str | Path, frame: pd.DataFrame, schema, encoding: str | None = None) -> pd.DataFrame:
    """A filled-in random sample (select_for_annotation --strategy random): per gold row its position in `frame` (the
    ok rows) and gold label. Missing labels (a sample with holes is no longer uniform), bad or unknown row ids and
    texts that differ from the file's are UserErrors naming the spreadsheet rows."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Gold sample not found: {path}")
    table = read_table(path, encoding=encoding, encoding_option="--gold_encoding")
    for column in ("row_id", "Label", "Sentence"):
        require_column(table, column, path, "(the sheet written by select_for_annotation.py --strategy random)")

    def rows(mask) -> str:
        numbers = [f"row {i + 2}" for i in np.flatnonzero(np.asarray(mask))]
        return ", ".join(numbers[:20]) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")

    parsed = [parse_label(v, schema) for v in table["Label"]]
    bad = [error is not None for _, error in parsed]
    if any(bad):
        first = next(f"{e}" for _, e in parsed if e is not None)
        raise UserError(
            f"{path}, column 'Label': {rows(bad)} {'has' if sum(bad) == 1 else 'have'} no valid label (e.g. {first}); "
            f"a gold sample must be labeled in full with ids 0..{len(schema) - 1} or the names {schema.names}, or its "
            "shares are biased."
        )
    row_ids = pd.to_numeric(table["row_id"], errors="coerce")
    not_int = row_ids.isna() | (row_ids != row_ids.round())
    if not_int.any():
        raise UserError(f"{path}, column 'row_id': {rows(not_int)} hold no whole-number row id.")
    row_ids = row_ids.astype(np.int64)
    repeated = row_ids.duplicated(keep=False)
    if repeated.any():
        raise UserError(f"{path}, column 'row_id': {rows(repeated)} repeat a row id; each comment may appear once.")
    position = pd.Series(np.arange(len(frame)), index=frame["row_id"].astype(np.int64).to_numpy())
    unknown = ~row_ids.isin(position.index)
    if unknown.any():
        raise UserError(
            f"{path}, column 'row_id': {rows(unknown)} name row ids with no labeled (status 'ok') row in the corpus "
            "file; was the sample drawn from this file?"
        )
    where = position.loc[row_ids.to_numpy()].to_numpy()
    texts = frame["text"].astype(str).to_numpy()[where]
    differs = np.array([clean_text(str(a)) != clean_text(str(b)) for a, b in zip(table["Sentence"], texts)])
    if differs.any():
        first = int(np.flatnonzero(differs)[0])
        shown = (
            f"row {first + 2} reads {str(table['Sentence'][first])[:40]!r} where the corpus has {texts[first][:40]!r}"
        )
        lossy = (  # what Excel's "CSV" save does on a Chinese Windows
            " A CSV saved by Excel in a Chinese code page (GBK) turns the characters it lacks, such as emoji, into '?':"
            " save the sheet as .xlsx or as 'CSV UTF-8'."
            if path.suffix.lower() == ".csv"
            else ""
        )
        raise UserError(
            f"{path}, column 'Sentence': {rows(differs)} differ from the corpus file's text at their row_id ({shown}); "
            f"was the sample drawn from this file?{lossy}"
        )
    return pd.DataFrame({"position": where, "gold": [label for label, _ in parsed], "text": texts})
