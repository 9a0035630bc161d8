#!/usr/bin/env bash
# The whole pipeline on the shipped sample, offline, in a few minutes on 2 CPU cores:
#   install -> build a small from-scratch BERT on the real bert-base-chinese tokenizer -> 5-fold cross-validation
#   with report -> label the unlabeled sample to Parquet -> a quick look at three comments.
# Outputs: runs/demo/ (report.md, metrics.json, plots/, fold_k/ checkpoints) and runs/demo/labels.parquet.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
bash scripts/install.sh
# shellcheck disable=SC1091
[[ -n ${VIRTUAL_ENV:-} || -n ${CONDA_PREFIX:-} ]] || source .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

[[ -f models/demo-bert/config.json ]] || python -m weibolabel.model.demo models/demo-bert
bash scripts/launch.sh jobs/train.py --config configs/demo.yaml
bash scripts/launch.sh jobs/label_corpus.py --input data/unlabeled_sample.xlsx --model runs/demo \
    --output runs/demo/labels.parquet --overwrite
python jobs/predict.py --model runs/demo "张国立老师主持得太好了" "越王勾践剑两千多年了还这么锋利" "早上好，转发微博"
echo
echo "Report: runs/demo/report.md   Labels: runs/demo/labels.parquet"
