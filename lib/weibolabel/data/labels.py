"""The label schema: ids 0..n-1, a short name and a description for each class."""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from weibolabel.util.errors import UserError


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    description: str = ""


DEFAULT_LABELS: tuple[Label, ...] = (
    Label(0, "production", "The show itself: production, actors and hosts, how good it is."),
    Label(1, "heritage", "Relics, ancient books and historical figures shown in the show."),
    Label(2, "culture", "The culture, art, spirit or nation the show conveys."),
    Label(3, "irrelevant", "A comment unrelated to the show."),
)


@dataclass(frozen=True)
class LabelSchema:
    labels: tuple[Label, ...] = DEFAULT_LABELS

    def __post_init__(self):
        ids = [label.id for label in self.labels]
        if ids != list(range(len(ids))):
            # Ids are positions: the model's output k is class k, so a gap or a reordering would shift every class.
            changes = ", ".join(
                f"'{label.name}': {label.id} -> {i}" for i, label in enumerate(self.labels) if label.id != i
            )
            raise UserError(
                f"Label ids must be 0..{len(ids) - 1} in order, one per class with no gap, got {ids}; renumber them "
                f"{', '.join(map(str, range(len(ids))))} ({changes}), and relabel the data to match."
            )
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names) or not all(names):
            raise UserError(f"Label names must be unique and non-empty, got {names}.")
        numbers = [name for name in names if name.isdigit()]
        if len({int(name) for name in numbers}) != len(numbers):
            raise UserError(f"Label names {numbers} name the same number twice (e.g. '1' and '01'); make them differ.")
        if len(ids) < 2:
            raise UserError("A label schema needs at least two classes.")

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def number_names(self) -> dict[int, int]:
        """Label id of each name that is a whole number ({5: 4} for names 1..5 on ids 0..4); see parse_label."""
        return {int(label.name): label.id for label in self.labels if label.name.isdigit()}

    def __len__(self) -> int:
        return len(self.labels)

    def closest_name(self, text: str) -> str | None:
        """The label name a mistyped cell most likely meant ('Heritage', 'heritge' -> 'heritage'), or None."""
        text = str(text).strip()
        by_case = {name.casefold(): name for name in self.names}
        if text.casefold() in by_case:
            return by_case[text.casefold()]
        close = difflib.get_close_matches(text.casefold(), list(by_case), n=1, cutoff=0.75)
        return by_case[close[0]] if close else None

    def id2label(self) -> dict[int, str]:
        return {label.id: label.name for label in self.labels}

    def to_list(self) -> list[dict]:
        return [asdict(label) for label in self.labels]

    @classmethod
    def from_list(cls, items: list[dict]) -> LabelSchema:
        try:
            labels = tuple(
                Label(int(item["id"]), str(item["name"]), str(item.get("description", ""))) for item in items
            )
        except (TypeError, ValueError) as error:
            raise UserError(f"Every label id must be a whole number ({error}).") from None
        return cls(labels)

    @classmethod
    def from_id2label(cls, id2label: dict, descriptions: dict | None = None) -> LabelSchema:
        descriptions = descriptions or {}
        return cls(
            tuple(
                Label(int(i), str(name), str(descriptions.get(str(i), descriptions.get(int(i), ""))))
                for i, name in sorted(id2label.items(), key=lambda kv: int(kv[0]))
            )
        )


def load_label_schema(path: str | Path | None) -> LabelSchema:
    """Read a YAML or JSON list of {id, name, description}; None gives the four default classes."""
    if path is None:
        return LabelSchema()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Label schema file not found: {path}")
    try:
        items = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise UserError(f"Could not parse the label schema {path}: {error}") from None
    if isinstance(items, dict) and "labels" in items:
        items = items["labels"]
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and {"id", "name"} <= item.keys() for item in items
    ):
        raise UserError(f"{path}: expected a list of entries with 'id', 'name' and optional 'description'.")
    try:
        return LabelSchema.from_list(items)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None
