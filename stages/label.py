"""label: descriptions -> art-style categories.

Two labelers write side by side, so their agreement can be measured:
- `keywords`: deterministic, finds taxonomy synonyms in the description (the baseline, always run);
- `llm`: a few-shot prompt to an LLM served by vLLM returns >= 3 raw style names as schema-constrained
  JSON, mapped through the same taxonomy (stages/llm.py).
`label.train_labeler` picks whose list becomes the `styles` column that balance/train use.
"""
from __future__ import annotations

import hashlib
import re
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from stages import shards
from stages.params import RUN_KNOBS, Params, load


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


def keyword_labels(descriptions: pd.DataFrame, taxonomy: Taxonomy, max_styles: int) -> pd.DataFrame:
    """Keyword labeler: image_id, keywords_styles (up to max_styles categories, first mention first)."""
    ok = descriptions["status"].eq("ok")
    styles = [taxonomy.find(text)[:max_styles] if good else [] for text, good in zip(descriptions["description"].fillna(""), ok)]
    return pd.DataFrame({"image_id": descriptions["image_id"].to_numpy(), "keywords_styles": styles})


def _primary_agreement(a: pd.Series, b: pd.Series) -> dict:
    """Share of images both labelers labelled on which their first styles agree, and set overlap (Jaccard)."""
    both = [(x, y) for x, y in zip(a, b) if len(x) and len(y)]
    if not both:
        return {"n": 0, "primary": None, "jaccard": None}
    primary = sum(x[0] == y[0] for x, y in both) / len(both)
    jaccard = sum(len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in both) / len(both)
    return {"n": len(both), "primary": round(primary, 4), "jaccard": round(jaccard, 4)}


def _gold_agreement(styles: pd.Series, gold: pd.Series) -> dict:
    """Against a single gold class: primary style equals it, or any of the styles does."""
    pairs = [(s, g) for s, g in zip(styles, gold) if isinstance(g, str) and g]
    if not pairs:
        return {"n": 0, "primary": None, "any": None}
    return {
        "n": len(pairs),
        "primary": round(sum(len(s) > 0 and s[0] == g for s, g in pairs) / len(pairs), 4),
        "any": round(sum(g in s for s, g in pairs) / len(pairs), 4),
    }


def agreement_report(labels: pd.DataFrame, gold: pd.Series | None = None) -> dict:
    """Coverage, styles per image and pairwise agreement between labelers (and gold where given)."""
    n = len(labels)
    report: dict = {"images": n}
    labelers = [c.removesuffix("_styles") for c in ("keywords_styles", "llm_styles") if c in labels]
    for name in labelers:
        col = labels[f"{name}_styles"]
        sizes = col.map(len)
        report[name] = {
            "labelled": int((sizes > 0).sum()),
            "unlabelled": int((sizes == 0).sum()),
            "coverage": round(float((sizes > 0).mean()) if n else 0.0, 4),
            "styles_per_image": round(float(sizes[sizes > 0].mean()) if (sizes > 0).any() else 0.0, 4),
        }
        if gold is not None:
            report[name]["vs_gold"] = _gold_agreement(col, gold)
    if "llm_raw" in labels:
        raw = labels["llm_raw"].explode().dropna()
        unmapped = labels["llm_unmapped"].explode().dropna()
        report["llm"].update(
            raw_names=int(raw.nunique()),
            unmapped_mentions=int(len(unmapped)),
            unmapped_names=int(unmapped.nunique()),
            failed=int(labels["llm_status"].eq("failed").sum()),
            skipped=int(labels["llm_status"].eq("skipped_no_description").sum()),
        )
        report["llm_vs_keywords"] = _primary_agreement(labels["llm_styles"], labels["keywords_styles"])
    return report


def gold_classes(image_names: pd.Series, source_path: Path) -> pd.Series | None:
    """`style_class` from a corpus's styles.csv (the shared Horde corpus has one), aligned to image_names."""
    csv = source_path / "styles.csv"
    if not csv.exists():
        return None
    gold = pd.read_csv(csv, dtype=str).set_index("image_name")["style_class"]
    return image_names.map(gold).fillna("").reset_index(drop=True)


def label_source(p: Params, source: str, taxonomy: Taxonomy, out_dir: Path, pool=None) -> tuple[pd.DataFrame, dict]:
    """Label one source's descriptions with keywords (+ LLM when a worker pool is given); returns labels and report."""
    describe_dir = Path("data/describe") / source
    descriptions = shards.read_dir(describe_dir, columns=["image_id", "description", "status"])
    labels = keyword_labels(descriptions, taxonomy, p.label.max_styles)
    if pool is not None:
        from stages.llm import label_llm  # the LLM labeler needs the vLLM workers only

        def fn(df: pd.DataFrame) -> pd.DataFrame:
            with pool.lease() as worker:
                return label_llm(df, worker, p, taxonomy)

        stats = shards.map_shards(
            shards.shard_files(describe_dir), out_dir / "llm" / source, fn,
            shard_size=p.label.shard_size, params={**p.label.model_dump(exclude=RUN_KNOBS), "files": _file_hashes(p)},
            columns=["image_id", "description", "status"], desc=f"label llm {source}", threads=len(pool),
        )
        # resume evidence goes to the log, not to metrics: metrics must not depend on crash history
        print(f"label llm {source}: {stats['shards']} shards, {stats['shards_resumed']} resumed")
        llm = shards.read_dir(out_dir / "llm" / source)
        labels = labels.merge(llm, on="image_id", how="left", validate="one_to_one")
    chosen = f"{p.label.train_labeler}_styles"
    labels["styles"] = labels[chosen]
    labels["taxonomy_version"] = taxonomy.version
    source_path = Path(p.sources[source].path)
    gold = gold_classes(labels["image_id"].str.split("/", n=1).str[1], source_path)
    report = agreement_report(labels, gold)
    return labels, report


def _file_hashes(p: Params) -> dict:
    """Editing the taxonomy or the few-shot prompt must redo LLM shards, not resume stale ones."""
    return {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in (p.label.taxonomy, p.label.fewshot)}


def _llm_workers(p: Params):
    """vLLM engine replicas (one per GPU) kept for the whole stage (start-up is the slow part), or none."""
    if not p.label.run_llm:
        return nullcontext()
    from stages.llm import VllmWorker, WorkerPool

    return WorkerPool(lambda env: VllmWorker.for_labels(p, env), p.label.replicas)


def main() -> None:
    p = load()
    taxonomy = load_taxonomy(p.label.taxonomy)
    out_dir = Path("data/labels")
    sources = [s.name for s in sorted(Path("data/describe").iterdir()) if s.is_dir()]
    metrics: dict = {"taxonomy_version": taxonomy.version, "categories": len(taxonomy.categories)}
    with _llm_workers(p) as pool:
        for source in sources:
            labels, metrics[source] = label_source(p, source, taxonomy, out_dir, pool)
            shards.write_atomic(labels, out_dir / f"{source}.parquet")
    shards.write_json("metrics/labels.json", metrics)


if __name__ == "__main__":
    main()
