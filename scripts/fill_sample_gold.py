"""Fill the Label column of a gold sample drawn from data/unlabeled_sample.xlsx with the class the data generator
gave each synthetic comment: the stand-in for annotators in the README's PPI demonstration.

    python scripts/fill_sample_gold.py --sample gold.xlsx --output gold_filled.xlsx

data/make_sample.py builds every unlabeled comment for a class; this script replays its generator with the same
seed to recover that class for each text. The one comment no class was drawn for (a 2,000-character essay pasted
from the heritage, culture and production pools) is given 'heritage', the pool its first sentences come from.
Only for the shipped synthetic sample: real comments need people.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
from pathlib import Path

from weibolabel.data.tables import read_table, write_xlsx
from weibolabel.review.annotation import workbook_sheets

MAKE_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "make_sample.py"


def generator_labels() -> dict[str, int]:
    """Text -> class id of every comment make_sample.make_unlabeled generates, replaying its first steps."""
    spec = importlib.util.spec_from_file_location("make_sample", MAKE_SAMPLE)
    make_sample = importlib.util.module_from_spec(spec)
    sys.modules["make_sample"] = make_sample  # its dataclasses look their module up there
    spec.loader.exec_module(make_sample)
    labeled = make_sample.make_labeled()
    rng = random.Random(make_sample.UNLABELED_SEED)
    maker = make_sample.CommentMaker(rng)
    seen = {make_sample.dedup_key(make_sample.EMOJI_ONLY)}
    seen |= {make_sample.dedup_key(t) for t in labeled["Sentence"] if len(t.strip()) > 8}
    rows = make_sample.generate_unique(
        maker, make_sample.UNLABELED_BASE, make_sample.UNLABELED_SHORT, make_sample.UNLABELED_LONG, seen
    )
    labels = {text: label for text, label in rows}
    labels[make_sample.EMOJI_ONLY] = make_sample.IRRELEVANT
    # The rest of make_unlabeled only copies texts, then adds the essay: replayed to get its exact text.
    texts = [text for text, _ in rows]
    rng.sample(texts, make_sample.N_UNLABELED_DUPLICATES)
    labels[maker.essay(2000)] = make_sample.HERITAGE
    expected = make_sample.make_unlabeled(labeled)["Sentence"].dropna()
    missing = [t for t in expected if t not in labels]
    if missing:
        raise SystemExit(f"the replay does not match make_sample.py ({len(missing)} texts unknown): update this script")
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", required=True, help="The sheet written by select_for_annotation --strategy random.")
    parser.add_argument("--output", required=True, help="The filled-in .xlsx to write.")
    args = parser.parse_args(argv)
    labels = generator_labels()
    # Read and written as the jobs read and write sheets (comments stay text, escapes are kept).
    sheets = {name: read_table(args.sample, sheet=name) for name in workbook_sheets(Path(args.sample))}
    first = next(iter(sheets))
    sample = sheets[first]
    unknown = [i + 2 for i, t in enumerate(sample["Sentence"]) if t not in labels]
    if unknown:
        raise SystemExit(f"{args.sample}: rows {unknown} are not comments of data/unlabeled_sample.xlsx")
    sample["Label"] = [labels[t] for t in sample["Sentence"]]
    write_xlsx(args.output, {**sheets, first: sample})
    print(f"wrote {args.output}: {len(sample)} rows, classes " + sample["Label"].value_counts().sort_index().to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
