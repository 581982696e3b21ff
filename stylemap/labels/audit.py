"""Label audit: which training labels look wrong, how noisy each class is, and how far the labellers agree.

Confident learning (cleanlab) judges a label by the model's probability for it, so the probability must
come from a probe that did not fit that label: the probe is cross-fitted on prompt-grouped folds, and an
image, its augmented copies and every image sharing its prompt are scored by a probe that never saw them.
Where several labellers (prompt keywords, the LLM, a corpus's gold classes) label the same images, CROWDLAB
(`cleanlab.multiannotator`) weighs them against each other and the probe.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from cleanlab.dataset import rank_classes_by_label_quality
from cleanlab.filter import find_label_issues
from cleanlab.multiannotator import get_label_quality_multiannotator
from cleanlab.rank import get_label_quality_scores
from sklearn.model_selection import StratifiedGroupKFold

from stylemap.model.probe import fit_probe, predict_proba
from stylemap.params import Train



def probe_settings(card: dict) -> Train:
    """The optimiser settings train recorded in model_card.json (the audit refits the probe exactly so).

    Only the fields `fit_probe` reads are set: the split fields do not apply to cross-fitting."""
    return Train.model_construct(**{k: card["probe"][k] for k in ("epochs", "lr", "weight_decay")})


def cross_fit_probs(x: np.ndarray, y: np.ndarray, groups: pd.Series, n_classes: int, t: Train, folds: int,
                    seed: int, *, temperature: float) -> np.ndarray:
    """Out-of-fold class probabilities per row: the probe refitted on the other folds, softened by evaluate's
    temperature, so they mean what predict's calibrated probabilities mean (CROWDLAB mixes the two).

    Folds never split a group (StratifiedGroupKFold, shuffled with `seed`) and keep the class mix where the
    groups allow it."""
    n_groups = groups.nunique()
    if n_groups < folds:
        raise ValueError(f"audit.folds is {folds} but the training rows hold {n_groups} prompt groups")
    probs = np.zeros((len(y), n_classes))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit, held in splitter.split(x, y, groups.to_numpy()):
        weight, bias = fit_probe(x[fit], y[fit], x[held], y[held], n_classes, t, seed)
        probs[held] = predict_proba(x[held], weight, bias, temperature)
    return probs


def find_issues(image_ids, labels: np.ndarray, probs: np.ndarray, classes: list[str],
                filter_by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per image (the `label_issues` schema, most suspect first) and per class.

    Per class: images given it, issues flagged among them, `noise_rate` = p(true label != k | given label = k)
    estimated from cleanlab's confident joint (`rank_classes_by_label_quality`'s "Label Noise"), and
    `quality` = 1 - noise_rate."""
    issue = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame({
        "image_id": np.asarray(image_ids), "label": names[labels], "suggested": names[probs.argmax(1)],
        "suggested_prob": probs.max(1), "quality": get_label_quality_scores(labels, probs, method="self_confidence"),
        "issue": issue,
    }).sort_values(["quality", "image_id"], kind="stable", ignore_index=True)
    ranked = rank_classes_by_label_quality(labels, probs).set_index("Class Index").reindex(range(len(classes)))
    per_class = pd.DataFrame({
        "class": classes, "images": np.bincount(labels, minlength=len(classes)),
        "issues": np.bincount(labels[issue], minlength=len(classes)),
        "noise_rate": ranked["Label Noise"].to_numpy(), "quality": ranked["Label Quality Score"].to_numpy(),
    })
    return table, per_class


def primary_classes(styles: pd.Series, classes: list[str]) -> np.ndarray:
    """A labeller's first style as a class index; NaN where it gave none or its first style is no probe class."""
    index = {c: float(i) for i, c in enumerate(classes)}
    return np.array([index.get(s[0], np.nan) if pd.api.types.is_list_like(s) and len(s) else np.nan for s in styles])


def annotations(labels: pd.DataFrame, gold: pd.Series | None, classes: list[str]) -> pd.DataFrame:
    """One column per labeller (keywords, llm, the corpus's own annotation, gold), one row per image: class
    index, NaN = no annotation.

    The LLM's column is NaN outside its subset; annotation's where the corpus annotates no style; gold's where
    the corpus has no styles.csv entry."""
    gold_styles = pd.Series([[]] * len(labels)) if gold is None else gold.map(lambda g: [g] if g else [])
    return pd.DataFrame({
        "keywords": primary_classes(labels["keywords_styles"], classes),
        "llm": primary_classes(labels["llm_styles"], classes),
        "annotation": primary_classes(labels["annotation_styles"], classes),
        "gold": primary_classes(gold_styles, classes),
    }, index=labels["image_id"].to_numpy())


def labeller_quality(annotated: pd.DataFrame, probs: np.ndarray) -> dict:
    """CROWDLAB consensus quality and each labeller's quality and agreement, or why they were not compared.

    A labeller is compared only where it shares an image with another one (its agreement is undefined
    otherwise); images no compared labeller annotated are rejected as `unlabelled`."""
    labelled = annotated.notna()
    shared = labelled.sum(axis=1) >= 2
    report: dict = {f"{name}.images": int(labelled[name].sum()) for name in annotated}
    compared = [name for name in annotated if (labelled[name] & shared).any()]
    if len(compared) < 2:
        covering = [name for name in annotated if labelled[name].any()]
        why = (f"{' and '.join(covering)} share no image" if len(covering) >= 2 else
               f"only {len(covering)} labeller ({', '.join(covering) or 'none'}) gives probe classes here")
        return {**report, "in": len(annotated), "kept": 0, "rejected": len(annotated),
                "rejected.skipped": len(annotated), "skipped": why}
    rows = labelled[compared].any(axis=1).to_numpy()
    result = get_label_quality_multiannotator(annotated.loc[rows, compared], probs[rows], return_weights=True,
                                              verbose=False)
    quality, stats = result["label_quality"], result["annotator_stats"]
    report.update({"in": len(annotated), "kept": int(rows.sum()), "rejected": int((~rows).sum()),
                   "rejected.unlabelled": int((~rows).sum()), "shared": int(shared.sum()),
                   "consensus_quality": float(quality["consensus_quality_score"].mean()),
                   "agreement": float(quality.loc[shared[rows].to_numpy(), "annotator_agreement"].mean()),
                   "model_weight": float(result["model_weight"])})
    for name in compared:
        report[f"{name}.quality"] = float(stats.loc[name, "annotator_quality"])
        report[f"{name}.agreement_with_consensus"] = float(stats.loc[name, "agreement_with_consensus"])
    return report
