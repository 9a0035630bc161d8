"""Labeled tables made on the fly: keyword pools the tiny model can learn in a few epochs, in rows that look like
the group's data; and the default label schema's class names."""

from __future__ import annotations

import random

import pandas as pd

# The default schema's classes in label order, written out rather than read from weibolabel.data.labels, so that the
# tests check them.
NAMES = ["production", "heritage", "culture", "irrelevant"]

# Keyword pools: the tiny model can learn them in a few epochs, and the rows look like the group's data.
POOLS = {
    0: ["主持人讲得真好", "节目制作太用心了", "这一期画面好美", "导演拍得好", "嘉宾表演很精彩", "下一季快点播"],
    1: ["越王勾践剑好锋利", "千里江山图太美了", "青铜器纹饰精美", "这件文物两千年了", "兵马俑好震撼", "苏轼太有才"],
    2: ["中华文化博大精深", "为祖国感到骄傲", "传统文化需要传承", "中国人的浪漫", "民族精神永存", "文化自信"],
    3: ["转发微博", "早上好呀", "抽奖抽奖", "今天天气不错", "有人一起吃饭吗", "明天考试保佑我"],
}
ENDINGS = ["", "！", "😭", "哈哈哈", "～", "#国家宝藏#", "👍👍", "。"]


def make_labeled_rows(num_rows: int, seed: int = 0) -> pd.DataFrame:
    """Columns Sentence and Label (0-3 in turn); every text unique."""
    rng = random.Random(seed)
    rows = []
    for i in range(num_rows):
        label = i % 4
        text = rng.choice(POOLS[label]) + rng.choice(ENDINGS) + rng.choice(POOLS[label])[:2] + str(i)
        rows.append({"Sentence": text, "Label": label})
    return pd.DataFrame(rows)
