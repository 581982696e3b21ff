"""Keyword labels and how far labelers agree (with each other and with gold classes where a corpus has them).

- `keyword_labels`: deterministic, finds taxonomy synonyms in the description (the baseline, always run);
- the LLM labeler lives in stylemap.teacher.tasks; `agreement_report` compares the two on the images both
  labelled (the LLM may label only a seeded subset, `label.llm_subset`);
- a corpus's own annotations (JourneyDB's Task1.Style) become one more labeller through the taxonomy's
  synonyms (`annotation_labels`), and an external check of the probe (`top3_agreement`).
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from stylemap.labels.taxonomy import Taxonomy
from stylemap.schemas import LABELLABLE


def keyword_labels(descriptions: pd.DataFrame, taxonomy: Taxonomy, max_styles: int) -> pd.DataFrame:
    """Keyword labeler: image_id, keywords_styles (up to max_styles categories, first mention first)."""
    ok = descriptions["status"].isin(LABELLABLE)
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
    """Coverage, styles per image and pairwise agreement between labelers (and gold where given).

    Each labeler is measured on the rows it ran on: keywords on every image, the LLM on the rows that have
    an `llm_status` (its seeded subset); LLM-vs-keywords compares the two on that subset.
    """
    report: dict = {"images": len(labels)}
    ran_llm = labels["llm_status"].notna() if "llm_status" in labels else pd.Series(False, index=labels.index)
    for name, rows in (("keywords", labels.index == labels.index), ("llm", ran_llm.to_numpy())):
        if not rows.any():
            continue
        col = labels.loc[rows, f"{name}_styles"].map(lambda s: [] if s is None else list(s))
        sizes = col.map(len)
        report[name] = {
            "images": int(rows.sum()),
            "labelled": int((sizes > 0).sum()),
            "unlabelled": int((sizes == 0).sum()),
            "coverage": round(float((sizes > 0).mean()), 4),
            "styles_per_image": round(float(sizes[sizes > 0].mean()) if (sizes > 0).any() else 0.0, 4),
        }
        if gold is not None:
            report[name]["vs_gold"] = _gold_agreement(col, gold[rows])
    if ran_llm.any():
        llm = labels[ran_llm.to_numpy()]
        raw = llm["llm_raw"].explode().dropna()
        unmapped = llm["llm_unmapped"].explode().dropna()
        report["llm"].update(
            raw_names=int(raw.nunique()),
            unmapped_mentions=int(len(unmapped)),
            unmapped_names=int(unmapped.nunique()),
            failed=int(llm["llm_status"].eq("failed").sum()),
            skipped=int(llm["llm_status"].eq("skipped_no_description").sum()),
        )
        report["llm_vs_keywords"] = _primary_agreement(llm["llm_styles"], llm["keywords_styles"])
    return report


def gold_classes(image_ids: pd.Series, gold: pd.DataFrame) -> pd.Series | None:
    """The gold class of each image ("" where none; corpus/gold.py's table), or None where the corpus has no gold."""
    if gold.empty:
        return None
    return image_ids.map(gold.set_index("image_id")["style_class"]).fillna("").reset_index(drop=True)


def annotation_labels(annotated: pd.Series, taxonomy: Taxonomy) -> pd.Series:
    """A corpus's own style annotations (JourneyDB's Task1.Style) as taxonomy categories, first mention first;
    None where the corpus annotated nothing, [] where no annotated name maps to a category."""
    def categories(names) -> list[str] | None:
        if names is None or not pd.api.types.is_list_like(names):
            return None
        found = [taxonomy.to_category(str(n)) for n in names]
        return list(dict.fromkeys(c for c in found if c))
    return annotated.map(categories)


def top3_agreement(annotation_styles: pd.Series, top3: pd.Series, classes: list[str]) -> dict:
    """Per probe class: images a corpus annotated with it, and the share of them where it is in the probe's top-3.

    An external check that costs nothing: the annotations were made by the corpus's authors, not by us."""
    report: dict = {}
    pairs = [(c, c in set(t)) for styles, t in zip(annotation_styles, top3) if pd.api.types.is_list_like(styles)
             for c in styles if c in classes]
    for c in classes:
        hits = [hit for name, hit in pairs if name == c]
        if hits:
            report[f"{c}.images"] = len(hits)
            report[f"{c}.top3_agreement"] = float(np.mean(hits))
    report["pairs"] = len(pairs)  # 0: the corpus annotates no style (no agreement to report)
    if pairs:
        report["top3_agreement"] = float(np.mean([hit for _, hit in pairs]))
    return report
