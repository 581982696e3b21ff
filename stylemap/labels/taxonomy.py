"""The versioned style taxonomy: raw style names (synonyms) -> ~18 categories.

The map itself is data (taxonomy.yaml beside this module, path in params `label.taxonomy`); its `version`
goes into every label row, so labels made under another map are never mixed up.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Taxonomy:
    """A versioned map from raw style names (synonyms) to ~18 categories."""

    version: int
    synonyms: dict[str, str]  # lower-case synonym -> category
    categories: tuple[str, ...]

    @cached_property
    def _pattern(self) -> re.Pattern:
        # Longest synonyms first so "oil painting" wins over "painting"-like shorter hits at one position.
        alternatives = sorted(self.synonyms, key=len, reverse=True)
        return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, alternatives)) + r")(?![\w-])")

    def find(self, text: str) -> list[str]:
        """Distinct categories mentioned in `text`, in order of first mention."""
        found: list[str] = []
        for match in self._pattern.finditer(text.lower()):
            category = self.synonyms[match.group(1)]
            if category not in found:
                found.append(category)
        return found

    def to_category(self, raw: str) -> str | None:
        """Category of one raw style name: exact synonym, else the first synonym inside it."""
        name = " ".join(raw.lower().replace("_", " ").split())
        if name in self.synonyms:
            return self.synonyms[name]
        if name in self.categories:
            return name
        hits = self.find(name)
        return hits[0] if hits else None


def load_taxonomy(path: str | Path) -> Taxonomy:
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or "version" not in doc or "categories" not in doc:
        raise ValueError(f"{path}: a taxonomy needs `version` and `categories`")
    synonyms: dict[str, str] = {}
    for category, names in doc["categories"].items():
        for name in [category.replace("_", " "), *names]:
            key = " ".join(str(name).lower().split())
            if synonyms.get(key, category) != category:
                raise ValueError(f"{path}: synonym {key!r} is listed under both {synonyms[key]!r} and {category!r}")
            synonyms[key] = category
    return Taxonomy(int(doc["version"]), synonyms, tuple(doc["categories"]))
