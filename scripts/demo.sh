#!/usr/bin/env bash
# The whole pipeline on the shipped sample, offline, in a few minutes on 2 CPU cores:
#   install -> build a small from-scratch BERT on the real bert-base-chinese tokenizer -> 5-fold cross-validation
#   with report -> label the unlabeled sample to Parquet -> a quick look at three comments -> the class shares a
#   paper would publish: a random gold sample (filled in with the classes the sample was generated for, standing in
#   for annotators), the headline share (PPI), the label-shift check and the difference between short and long
#   comments.
# Outputs: runs/demo/ (report.md, metrics.json, plots/, fold_k/ checkpoints), runs/demo/labels.parquet and
# runs/demo/analysis/ (report.md, shares.csv, shares.json, share_differences.csv, plots).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
bash scripts/install.sh
# shellcheck disable=SC1091
[[ -n ${VIRTUAL_ENV:-} || -n ${CONDA_PREFIX:-} ]] || source .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

[[ -f models/demo-bert/config.json ]] || python -m weibolabel.model.demo models/demo-bert
bash scripts/launch.sh jobs/train.py --config configs/demo.yaml
# The sample has no group column: comments up to 25 characters against longer ones stand in for two shows.
python -c "
import pandas as pd
frame = pd.read_excel('data/unlabeled_sample.xlsx')
frame['length'] = frame['Sentence'].fillna('').astype(str).str.len().le(25).map({True: 'short', False: 'long'})
frame.to_csv('runs/demo/unlabeled_sample.csv', index=False)
"
bash scripts/launch.sh jobs/label_corpus.py --input runs/demo/unlabeled_sample.csv --carry_columns length \
    --model runs/demo --output runs/demo/labels.parquet --overwrite
python jobs/predict.py --model runs/demo "张国立老师主持得太好了" "越王勾践剑两千多年了还这么锋利" "早上好，转发微博"

python jobs/select_for_annotation.py --input runs/demo/labels.parquet --strategy random --k 100 --seed 0 \
    --output runs/demo/gold_sample.xlsx --overwrite
python -c "import pandas as pd
sample = pd.read_excel('runs/demo/gold_sample.xlsx')
truth = pd.read_csv('data/unlabeled_sample_truth.csv', index_col='row_id')['Label']
sample.assign(Label=sample['row_id'].map(truth)).to_excel('runs/demo/gold_filled.xlsx', index=False)"
python jobs/analyze_labels.py --input runs/demo/labels.parquet --run runs/demo --gold_sample runs/demo/gold_filled.xlsx \
    --group_by length --output_dir runs/demo/analysis
python -c "
import json, pandas as pd
summary = json.load(open('runs/demo/analysis/shares.json'))
check = summary['label_shift_check']
print(f\"Headline: {summary['headline']}; label-shift check: {check['verdict']} (p = {check['p_value']:.3f})\")
shares = pd.read_csv('runs/demo/analysis/shares.csv', keep_default_na=False)
whole = shares[shares['group'] == ''][['class', 'share', 'share_low', 'share_high', 'share_method']]
print(whole.round(3).to_string(index=False))
differences = pd.read_csv('runs/demo/analysis/share_differences.csv')
columns = ['group_a', 'group_b', 'class', 'difference', 'difference_low', 'difference_high', 'difference_method']
print(differences[columns].round(3).to_string(index=False))
"
echo
echo "Report: runs/demo/report.md   Labels: runs/demo/labels.parquet   Analysis: runs/demo/analysis/report.md"
