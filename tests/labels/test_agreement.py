import pandas as pd
import pytest

from stylemap.corpus.gold import read_gold
from stylemap.labels.agreement import (agreement_report, annotation_labels, gold_classes, keyword_labels,
                                      top3_agreement)


def test_keyword_labels_in_order_of_mention_up_to_max(taxonomy):
    df = pd.DataFrame({
        "image_id": ["s/a", "s/b", "s/c", "s/d"],
        "description": ["pixel art of a cat, 16-bit, watercolor wash, oil painting, 3d render",
                        "a cat on a sofa", "", "pencil sketch"],
        "status": ["ok", "ok", "empty", "failed"],
    })
    out = keyword_labels(df, taxonomy, max_styles=3)
    assert out["keywords_styles"].tolist() == [["pixel_art", "watercolor", "oil_painting"], [], [], []]


def test_agreement_report_counts():
    labels = pd.DataFrame({
        "image_id": list("abcd"),
        "keywords_styles": [["anime"], ["watercolor", "anime"], [], ["photography"]],
        "llm_styles": [["anime", "fantasy_art"], ["anime"], ["pixel_art"], []],
        "llm_raw": [["anime", "fantasy"], ["manga"], ["pixel art"], []],
        "llm_unmapped": [[], [], [], ["kitsch"]],
        "llm_status": ["ok", "ok", "ok", "ok"],
    })
    gold = pd.Series(["anime", "watercolor", "", "photography"])
    r = agreement_report(labels, gold)
    assert r["keywords"]["coverage"] == 0.75 and r["keywords"]["unlabelled"] == 1
    assert r["llm"]["styles_per_image"] == pytest.approx(4 / 3, abs=1e-4)
    assert r["llm"]["raw_names"] == 4 and r["llm"]["unmapped_mentions"] == 1
    assert r["llm_vs_keywords"] == {"n": 2, "primary": 0.5, "jaccard": pytest.approx((0.5 + 0.5) / 2)}
    assert r["keywords"]["vs_gold"] == {"n": 3, "primary": 1.0, "any": 1.0}
    assert r["llm"]["vs_gold"]["primary"] == pytest.approx(1 / 3, abs=1e-4)


def test_llm_is_measured_on_its_subset_only():
    labels = pd.DataFrame({
        "image_id": list("abc"),
        "keywords_styles": [["anime"], ["anime"], []],
        "llm_styles": [["anime"], None, None], "llm_raw": [["anime"], None, None],
        "llm_unmapped": [[], None, None], "llm_status": ["ok", None, None],
    })
    r = agreement_report(labels)
    assert r["images"] == 3 and r["keywords"]["images"] == 3 and r["llm"]["images"] == 1
    assert r["llm"]["coverage"] == 1.0 and r["llm_vs_keywords"]["n"] == 1


def test_keywords_agree_with_horde_gold_classes(taxonomy, horde):
    meta = pd.read_parquet(horde / "metadata.parquet")
    df = pd.DataFrame({"image_id": "horde/" + meta["image_name"], "description": meta["prompt"], "status": "ok"})
    labels = keyword_labels(df, taxonomy, 3)
    gold = gold_classes(df["image_id"], read_gold(horde, "horde"))
    report = agreement_report(labels, gold)
    assert report["keywords"]["vs_gold"]["n"] == 101
    assert report["keywords"]["vs_gold"]["any"] > 0.5  # prompts of these presets name their style


def test_corpus_annotations_map_through_the_taxonomy_and_check_the_probe(taxonomy):
    annotated = pd.Series([["Watercolor painting", "Impressionism"], ["nonsense style"], None, ["pixel art", "watercolour"]])
    labels = annotation_labels(annotated, taxonomy)
    assert labels[0] == ["watercolor", "impressionism"] and labels[1] == [] and labels[2] is None
    assert labels[3] == ["pixel_art", "watercolor"]  # "watercolour" is a synonym
    top3 = pd.Series([["watercolor", "anime", "photography"], ["anime"] * 3, ["anime"] * 3, ["anime", "x", "y"]])
    report = top3_agreement(labels, top3, ["anime", "photography", "pixel_art", "watercolor"])
    assert report["watercolor.images"] == 2 and report["watercolor.top3_agreement"] == 0.5
    assert report["pixel_art.images"] == 1 and report["pixel_art.top3_agreement"] == 0.0
    assert "anime.images" not in report and report["pairs"] == 3  # impressionism is no probe class here
    assert report["top3_agreement"] == pytest.approx(1 / 3)
    assert top3_agreement(pd.Series([None, None]), top3[:2], ["anime"]) == {"pairs": 0}  # nothing annotated


def test_analyses_cut_after_their_style_section_began_are_labelled_others_are_not(taxonomy):
    df = pd.DataFrame({"image_id": ["a", "b", "c", "d"],
                       "description": ["a watercolor of a cat", "1. a cat\n2. Technique: watercolor", "a watercolor",
                                       "a watercolor"],
                       "status": ["ok", "truncated_styled", "truncated", "failed"]})
    assert keyword_labels(df, taxonomy, 3)["keywords_styles"].tolist() == [["watercolor"], ["watercolor"], [], []]
