"""Markdown tables for report.md, the analysis reports and the benchmark results: one writer for all of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd


def markdown_table(header: Sequence, rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured table; each cell is str()-ed, and a '|' inside a cell is escaped so it cannot split it."""

    def line(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(row) for row in rows)])


def frame_table(frame: pd.DataFrame) -> str:
    return markdown_table(list(frame.columns), frame.itertuples(index=False))
