"""Label a handful of comments and print a table: the quick look, on the labeling job's code path.

python jobs/predict.py --model runs/cv "张国立老师主持得真好" "越王勾践剑太震撼了"
cat comments.txt | python jobs/predict.py --model runs/cv/fold_0
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from weibolabel.errors import UserError
from weibolabel.inference import label_texts, load_ensemble
from weibolabel.runs import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A training run directory or one checkpoint directory.")
    parser.add_argument("--max_length", type=int, default=None, help="Longest input in tokens (default: the run's).")
    parser.add_argument("--no_calibration", action="store_true", help="Ignore the run's fitted temperature.")
    parser.add_argument("comments", nargs="*", help="Comments to label; read from stdin (one a line) if none.")
    args = parser.parse_args(argv)
    setup_logging()
    comments = args.comments or [line.rstrip("\n") for line in sys.stdin]
    try:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        ensemble = load_ensemble(args.model, device, calibrated=not args.no_calibration)
        labels = label_texts(ensemble, comments, args.max_length or ensemble.max_length)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = pd.DataFrame({"comment": [c if len(c) <= 40 else c[:39] + "…" for c in comments]})
    table["label"] = labels["label"]
    table["name"] = labels["label_name"]
    for i, name in enumerate(ensemble.schema.names):
        table[f"p({name})"] = [None if p is None else round(float(p[i]), 3) for p in labels["probs"]]
    table["status"] = labels["status"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200, "display.unicode.east_asian_width", True):
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
