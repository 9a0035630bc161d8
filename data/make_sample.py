"""Generate the synthetic sample comments from the phrase pools in sample_phrases.json (no network, no language
model, no real user data): labeled_sample.xlsx, unlabeled_sample.xlsx and unlabeled_sample_truth.csv (the class
each non-empty unlabeled row was generated for), next to this script or in --out-dir. See data/README.md."""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import unicodedata
from pathlib import Path

import pandas as pd

POOLS = json.loads((Path(__file__).resolve().parent / "sample_phrases.json").read_text(encoding="utf-8"))
CLASSES = POOLS["classes"]  # label id = position
HERITAGE, IRRELEVANT = CLASSES.index("heritage"), CLASSES.index("irrelevant")
CLAUSES, MEDIUM, LONG, SHORT, TAILS = (
    [POOLS[pool][n] for n in CLASSES] for pool in ("clauses", "medium", "long", "short", "tails")
)
SHOWS, TRADITIONAL, EMOJI_ONLY = POOLS["shows"], POOLS["traditional"], POOLS["emoji_only"]

LABELED_SEED, UNLABELED_SEED = 20240501, 20240917
# Rows per class (production, heritage, culture, irrelevant) before the deliberate oddities are added.
LABELED = {"base": [137, 115, 115, 94], "short": [3, 3, 3, 3], "long": [2, 2, 2, 1], "emoji_only": 3}
UNLABELED = {"base": [88, 73, 73, 59], "short": [2, 2, 2, 2], "long": [1, 1, 1, 1], "emoji_only": 0}
N_EXACT_DUPLICATES, N_WHITESPACE_DUPLICATES, N_UNLABELED_DUPLICATES, N_UNLABELED_EMPTY = 10, 5, 2, 3  # copies added
FIELDS = string.Formatter()


def dedup_key(text: str) -> str:
    """Key that keeps the generated base rows distinct (ignores whitespace, width and case)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


def has_text(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)  # a letter or digit, any script


def show_fields(rng: random.Random, show: dict) -> dict[str, str]:
    """A show's name, tag and kind, one of its hosts (if it has any) and one person on it."""
    host = rng.choice(show["hosts"]) if show["hosts"] else ""
    person = rng.choice(show["people"])
    return {"show": show["name"], "tag": show["tag"], "kind": show["kind"], "host": host, "person": person}


def context(rng: random.Random) -> dict[str, str]:
    """One consistent set of fillers per comment (the same show, relic, figure... in all its clauses)."""
    show, relic, poem = rng.choice(SHOWS), rng.choice(POOLS["relics"]), rng.choice(POOLS["poems"])
    return show_fields(rng, show) | relic | poem | {name: rng.choice(v) for name, v in POOLS["fillers"].items()}


def fill(rng: random.Random, templates: list[str], ctx: dict[str, str]) -> list[str]:
    """Fill one comment's templates; if any needs a host, the comment is about a show that has one."""
    if "host" in {name for t in templates for _, name, _, _ in FIELDS.parse(t)} and not ctx["host"]:
        ctx.update(show_fields(rng, rng.choice([s for s in SHOWS if s["hosts"]])))
    return [template.format(**ctx) for template in templates]


def emojis(rng: random.Random, lo: int = 1, hi: int = 3) -> str:
    if rng.random() < 0.4:  # the same emoji repeated, very common on Weibo
        return rng.choice(POOLS["emoji"]) * rng.randint(lo, hi + 1)
    return "".join(rng.choice(POOLS["emoji"]) for _ in range(rng.randint(lo, hi)))


def decorate(rng: random.Random, text: str, label: int, ctx: dict[str, str]) -> str:
    """Weibo style: another class's clause now and then, slang, laughter, emoji, tags, mentions, reposts."""
    irrelevant, laugh = label == IRRELEVANT, lambda: rng.choice(("哈" * rng.randint(3, 8), "hhhh", "233333", "笑死"))
    named = [s["tag"] for s in SHOWS if f"《{s['name']}》" in text]
    named += [tag for hint, tag in POOLS["show_hints"].items() if hint in text]
    tag = named[0] if named else ctx["tag"]  # the show the comment names, else its own
    if not irrelevant and rng.random() < 0.10:
        text = f"{text}，{rng.choice(TAILS[rng.choice([c for c in range(len(CLASSES)) if c != label])])}"
    if rng.random() < 0.10:
        slang = POOLS["slang"]
        text = f"{rng.choice(slang)}！{text}" if rng.random() < 0.5 else f"{text}，{rng.choice(slang)}"
    if rng.random() < 0.05:
        text = f"{text} {rng.choice(POOLS['english'])}"
    if rng.random() < 0.10:
        text = f"{laugh()}{text}" if rng.random() < 0.5 else f"{text}{laugh()}"
    if rng.random() < 0.12:
        text = text.rstrip("。，！") + rng.choice(("！！！", "!!!", "！！", "？？"))
    if rng.random() < (0.40 if irrelevant else 0.30):
        text += emojis(rng)
    if rng.random() < 0.10:
        text += rng.choice(POOLS["weibo_emoticons"]) * rng.randint(1, 3)
    if rng.random() < 0.05:  # emoji-heavy
        text = f"{emojis(rng, 2, 4)}{text}{emojis(rng, 4, 8)}"
    roll, user = rng.random(), ctx["user"]
    furniture = [(0.16, f"#{tag}# {text}"), (0.20, f"{text} #{tag}#"), (0.26, f"@{user} {text}")]
    furniture += [(0.30, f"回复@{user}:{text}"), (0.33, f"{text}//@{user}:")]
    furniture += [(0.40, f"转发微博 {text}") if irrelevant else (0.35, f"打卡 {text}")]
    text = next((styled for limit, styled in furniture if roll < limit), text)
    roll = rng.random()  # now and then traditional characters, in the whole comment or in about half of it
    share = 1.0 if roll < 0.03 else 0.5 if roll < 0.06 else 0.0
    return "".join(TRADITIONAL.get(ch, ch) if share and rng.random() < share else ch for ch in text)


def normal(rng: random.Random, label: int) -> str:
    """A typical comment, mostly 5-40 characters."""
    ctx = context(rng)
    templates = [rng.choice(CLAUSES[label])]
    if rng.random() < 0.25:
        templates.append(rng.choice([t for t in CLAUSES[label] if t != templates[0]]))
    text, *more = fill(rng, templates, ctx)
    if more and len(text) + len(more[0]) <= 32:
        text = f"{text}{rng.choice(('，', '！', ' ', '。'))}{more[0]}"
    text = decorate(rng, text, label, ctx)
    while len(text) < 5:
        text += emojis(rng)
    return text


def medium(rng: random.Random, label: int) -> str:
    """A comment of 40-120 characters."""
    for _ in range(50):
        ctx = context(rng)
        templates = [rng.choice(MEDIUM[label])] + ([rng.choice(CLAUSES[label])] if rng.random() < 0.6 else [])
        parts = fill(rng, templates, ctx)
        rng.shuffle(parts)
        text = decorate(rng, "，".join(parts), label, ctx)
        if 40 <= len(text) <= 120:
            return text
    raise RuntimeError("could not build a medium comment")


def long(rng: random.Random, label: int, lo: int = 300, hi: int = 800) -> str:
    """A long post: the class's opening sentence, shuffled others while they fit the target, its closing one."""
    ctx = context(rng)
    target = rng.randint(lo + 20, hi - 30)
    filled = fill(rng, [*LONG[label], *MEDIUM[label]], ctx)
    opener, *middle, closer = filled[: len(LONG[label])]
    body = middle + [s + "。" for s in filled[len(LONG[label]) :]]
    rng.shuffle(body)
    chosen = [opener]
    for sentence in body:
        if sum(map(len, chosen)) + len(sentence) + len(closer) <= target:
            chosen.append(sentence)
    chosen.append(closer)
    if rng.random() < 0.5:  # in paragraphs
        cut = sorted(rng.sample(range(1, len(chosen)), k=min(2, len(chosen) - 1)))
        paragraphs = (chosen[: cut[0]], chosen[cut[0] : cut[-1]], chosen[cut[-1] :])
        text = "\n".join("".join(p) for p in paragraphs if p)
    else:
        text = "".join(chosen)
    text = f"#{ctx['tag']}# {text}" if rng.random() < 0.5 else text
    text = text + emojis(rng) if rng.random() < 0.5 else text
    assert lo <= len(text) <= hi, len(text)
    return text


def essay(rng: random.Random, target: int = 2000) -> str:
    """One post of about `target` characters mixing the long pools, like a pasted essay."""
    ctx = context(rng)
    sentences = [s for name in ("heritage", "culture", "production") for s in POOLS["long"][name]]
    sentences += [s for name in ("heritage", "culture") for s in POOLS["medium"][name]]
    sentences = [s.rstrip("。") + "。" for s in fill(rng, sentences, ctx)]
    text, i = "【长文预警】", 0
    while len(text) < target:
        text, i = text + sentences[i % len(sentences)], i + 1
    return f"#{ctx['tag']}# {text}🙏"


def make(rng: random.Random, label: int, shape: str, text_only: bool) -> str:
    if shape == "emoji":
        return rng.choice(POOLS["emoji_short"])
    if shape == "short":
        return rng.choice([s for s in SHORT[label] if has_text(s) or not text_only])
    return {"long": long, "medium": medium, "normal": normal}[shape](rng, label)


def generate_unique(rng: random.Random, plan: dict, seen: set[str]) -> list[tuple[str, int]]:
    """(text, label) rows distinct by `dedup_key` from each other and from `seen`, in the plan's numbers per class."""
    rows = []
    for label, count in enumerate(plan["base"]):
        n_emoji = plan["emoji_only"] if label == IRRELEVANT else 0
        shapes = ["short"] * plan["short"][label] + ["long"] * plan["long"][label] + ["emoji"] * n_emoji
        shapes += ["medium" if rng.random() < 0.18 else "normal" for _ in range(count - len(shapes))]
        rng.shuffle(shapes)
        for shape in shapes:
            for _ in range(200):
                text = make(rng, label, shape, text_only=plan["emoji_only"] == 0)
                if dedup_key(text) not in seen:
                    break
            else:
                raise RuntimeError(f"the pools are too small for {plan['base'][label]} {CLASSES[label]} comments")
            seen.add(dedup_key(text))
            rows.append((text, label))
    return rows


def make_labeled(seed: int = LABELED_SEED) -> pd.DataFrame:
    """The labeled sample: distinct comments plus copies, whitespace variants and two conflicting pairs."""
    rng = random.Random(seed)
    conflicts = [(c["text"], *(CLASSES.index(n) for n in c["labels"])) for c in POOLS["conflicts"]]
    rows = generate_unique(rng, LABELED, {dedup_key(text) for text, _, _ in conflicts})
    sources = rng.sample(range(len(rows)), N_EXACT_DUPLICATES + N_WHITESPACE_DUPLICATES)
    extra = [rows[i] for i in sources[:N_EXACT_DUPLICATES]]
    spaced = [i for i in range(len(rows)) if " " in rows[i][0].strip() and i not in sources]
    variants = [*sources[N_EXACT_DUPLICATES:-1], rng.choice(spaced)]  # the last doubles an existing space
    for form, i in zip((" {}", "{}  ", " {} ", " {}", None), variants, strict=True):
        extra.append((form.format(rows[i][0]) if form else rows[i][0].replace(" ", "  ", 1), rows[i][1]))
    rows += [(text, first) for text, first, _ in conflicts] + extra + [(text, second) for text, _, second in conflicts]
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["Sentence", "Label"]).astype({"Label": "int64"})


def make_unlabeled(labeled: pd.DataFrame, seed: int = UNLABELED_SEED) -> pd.DataFrame:
    """Sentence and its generated class (Label); only short comments (up to 8 characters) may be in `labeled`."""
    rng = random.Random(seed)
    seen = {dedup_key(EMOJI_ONLY)} | {dedup_key(t) for t in labeled["Sentence"] if len(t.strip()) > 8}
    rows: list[tuple[str | None, int | None]] = generate_unique(rng, UNLABELED, seen)
    rows += rng.sample(rows, N_UNLABELED_DUPLICATES)
    # The essay mixes pools; it opens with heritage sentences, so heritage is its class.
    rows += [(EMOJI_ONLY, IRRELEVANT), (essay(rng, 2000), HERITAGE)] + [(None, None)] * N_UNLABELED_EMPTY
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["Sentence", "Label"]).astype({"Label": "Int64"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    out = parser.parse_args(argv).out_dir
    out.mkdir(parents=True, exist_ok=True)
    labeled = make_labeled()
    unlabeled = make_unlabeled(labeled)
    labeled.to_excel(out / "labeled_sample.xlsx", index=False, sheet_name="Sheet1")
    # The unlabeled file has no Label column, as a real corpus has none (the labeling job would read one as gold).
    unlabeled[["Sentence"]].to_excel(out / "unlabeled_sample.xlsx", index=False, sheet_name="Sheet1")
    truth = unlabeled["Label"].dropna().rename_axis("row_id").reset_index()
    truth.to_csv(out / "unlabeled_sample_truth.csv", index=False)
    print(f"wrote {out}: labeled_sample.xlsx ({len(labeled)} rows), unlabeled_sample.xlsx ({len(unlabeled)} rows)")
    print(f"and unlabeled_sample_truth.csv (the classes of its {len(truth)} non-empty rows)")


if __name__ == "__main__":
    main()
