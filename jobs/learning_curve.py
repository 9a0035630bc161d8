"""How much would more labels help? Macro-F1 against training-set size, under a finished run's own folds.

    accelerate launch jobs/learning_curve.py --run runs/cv --fractions 0.25 0.5 0.75 1.0
    python jobs/learning_curve.py --run runs/cv --baseline_only          # the TF-IDF baseline alone, in seconds

For every fold of the run and every fraction, a stratified, seeded share of the fold's training part is drawn
(smaller shares are subsets of larger ones), a fresh encoder is trained on it with the run's settings (the best
epoch picked on a validation part carved from the share) and scored once on the run's untouched test fold; the
TF-IDF baseline is scored on the same shares. At 100% the encoder's scores are read from the run itself, since
retraining would repeat it exactly. Cells are spread over processes like the folds of jobs/train.py, and each
finished cell is saved, so a re-run resumes. Writes learning_curve.csv (per fold), learning_curve.md and
learning_curve.png into the run directory or --output_dir.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from weibolabel.data.tables import write_table
from weibolabel.run.config import DEVICE_OPTION, parse_config
from weibolabel.run.device import check_device
from weibolabel.run.launch import exit_job, make_accelerator, on_main_process, run_guarded, setup_logging
from weibolabel.run.layout import RunLayout, check_outputs, claim_output_directory, ensure_writable
from weibolabel.run.preemption import StopSignal
from weibolabel.run.startup import JobLogger, refuse
from weibolabel.util.errors import UserError
from weibolabel.util.files import write_json, write_text

# torch, transformers and accelerate take seconds to import: learning_curve() imports them (with the modules that
# need them), after the options are parsed, so --help comes at once (bench/startup.py).
logger = JobLogger("learning_curve")


@dataclass(frozen=True)
class LearningCurveConfig:
    """Macro-F1 at growing shares of each fold's training data, under the folds of a finished training run."""

    run: str | None = field(default=None, metadata={"help": "A training run directory of jobs/train.py (required)."})
    fractions: list[float] = field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0], metadata={"help": "Shares of each fold's training part."}
    )
    baseline_only: bool = field(default=False, metadata={"help": "Only the TF-IDF baseline (fast; no encoder)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where to write (default: the run directory)."})
    device: str = field(default="auto", metadata=DEVICE_OPTION)


def main(argv: list[str] | None = None) -> int:
    config = parse_config(LearningCurveConfig, argv, description=__doc__)
    setup_logging()
    try:
        check_device(config.device)  # a GPU node whose GPUs torch cannot use stops here, not on its CPU
        check_run(config)  # before the heavy imports: a wrong --run is said at once
    except (UserError, KeyboardInterrupt) as error:
        return refuse(error, "learning_curve")
    accelerator = make_accelerator(device=config.device)
    return run_guarded(lambda: learning_curve(config, accelerator, StopSignal()), accelerator, logger, "finished cells")


def preflight(argv: list[str]) -> None:
    """`python -m weibolabel.run.preflight jobs/learning_curve.py ARGS` (the launch scripts, before starting any
    process): the device and the run directory, in one process; nothing is written."""
    config = parse_config(LearningCurveConfig, argv, description=__doc__)
    check_device(config.device)
    check_run(config)


def check_run(config: LearningCurveConfig) -> None:
    """--run names a training run directory (weibolabel.training.learning_curve.read_run reads it)."""
    if not config.run:
        raise UserError("--run is required: a training run directory of jobs/train.py.")
    layout = RunLayout(config.run)
    for path in (layout.config, layout.folds_csv, layout.identity):
        if not path.is_file():
            raise UserError(f"{config.run} is not a training run directory of jobs/train.py (no {path.name}).")
    check_outputs("learning_curve", reads={"--run": config.run}, output_dir=output_directory(config))


def output_directory(config: LearningCurveConfig) -> Path:
    """--output_dir, or the run directory itself (the learning curve's files join the run's)."""
    return Path(config.output_dir) if config.output_dir else Path(config.run)


def learning_curve(config: LearningCurveConfig, accelerator, stop: StopSignal) -> None:
    # 1. The run's settings, rows and folds, exactly as it used them (main() checked that it is a run).
    from weibolabel.model.inference import encode
    from weibolabel.model.loading import load_tokenizer
    from weibolabel.training import learning_curve as lc
    from weibolabel.training.fold import Recipe, fit_and_score_fold
    from weibolabel.util import plots

    run, layout = Path(config.run), RunLayout(config.run)
    train_config, schema, folds = lc.read_run(run)
    recipe = Recipe.from_settings(train_config)  # the run's own settings, exactly
    texts, labels = folds["text"].astype(str).tolist(), folds["label"].to_numpy(dtype=np.int64)
    groups, fold_of_row = folds["group"].astype(str).tolist(), folds["fold"].to_numpy(dtype=np.int64)
    grid = [(fold, fraction) for fraction in sorted(set(config.fractions)) for fold in range(train_config.num_folds)]
    out = output_directory(config)
    work = out / "learning_curve_parts"
    on_main_process(accelerator, lambda: (claim_output_directory(out, "learning_curve"), ensure_writable(work)))

    # 2. The baseline on every fold and share (seconds).
    cells = []
    if accelerator.is_main_process:
        cells = lc.baseline_cells(
            recipe=recipe, texts=texts, labels=labels, fold_of_row=fold_of_row, grid=grid, names=schema.names
        )
        logger.info(f"baseline: {len(cells)} cells scored")

    # 3. The encoder: 100% comes from the run's own fold results; other shares are trained as jobs/train.py trains a
    # fold, cell c on process c mod N, each finished cell saved so a re-run skips it.
    reused, todo = [], []
    if not config.baseline_only:
        reused = [fold for fold, fraction in grid if fraction == 1.0 and layout.fold_result(fold).is_file()]
        todo = [(fold, fraction) for fold, fraction in grid if fraction != 1.0 or fold not in reused]
    if accelerator.is_main_process:
        cells += [lc.cell_record("encoder", 1.0, json.loads(layout.fold_result(k).read_text()), "run") for k in reused]

    def cell_file(fold: int, fraction: float) -> Path:  # one finished encoder cell (a re-run skips it)
        return work / f"encoder_fold_{fold}_fraction_{fraction:g}.json"

    if todo:
        tokenizer = load_tokenizer(train_config.model_name_or_path)
        input_ids = encode(tokenizer, texts, train_config.max_length).input_ids
        for c, (fold, fraction) in enumerate(todo):
            done = cell_file(fold, fraction)
            if c % accelerator.num_processes != accelerator.process_index or done.is_file():
                continue
            logger.info(f"encoder: fold {fold}, {fraction:.0%} of the training part", main_process_only=False)
            state_dir = work / f"fold_{fold}_fraction_{fraction:g}"
            record, _, model = fit_and_score_fold(
                recipe=recipe,
                accelerator=accelerator,
                stop=stop,
                schema=schema,
                pad_id=tokenizer.pad_token_id,
                input_ids=input_ids,
                labels=labels,
                groups=groups,
                train_index=lc.subsample(np.flatnonzero(fold_of_row != fold), labels, fraction, recipe.seed + fold),
                test_index=np.flatnonzero(fold_of_row == fold),
                fold=fold,
                state_file=state_dir / "state.pt",
            )
            write_json(done, lc.cell_record("encoder", fraction, record))
            shutil.rmtree(state_dir, ignore_errors=True)
            del model
            accelerator.free_memory()
        accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    cells += [json.loads(cell_file(fold, fraction).read_text()) for fold, fraction in todo]

    # 4. The per-fold table, its summary, the plot and the Markdown page.
    table = pd.DataFrame(cells).sort_values(["model", "fraction", "fold"], kind="stable")
    write_table(table, out / "learning_curve.csv")
    summary = lc.summarize(table)
    plots.plot_data_size_curve(summary, out / "learning_curve.png", f"Learning curve, {train_config.num_folds} folds")
    page = lc.render_markdown(summary, recipe, train_config.num_folds, run, reused_full=bool(reused))
    write_text(out / "learning_curve.md", page)
    if not any(work.iterdir()):
        work.rmdir()
    for row in summary.itertuples(index=False):
        logger.info(f"{row.model} {row.fraction:.0%}: macro-F1 {row.macro_f1_mean:.3f} ± {row.macro_f1_std:.3f}")
    logger.info(f"wrote {out / 'learning_curve.md'}")


if __name__ == "__main__":
    exit_job(main())
