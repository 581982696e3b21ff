import pandas as pd
import pytest

from stages.label import agreement_report, gold_classes, keyword_labels, load_taxonomy


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy("stages/taxonomy.yaml")


def test_taxonomy_merges_synonyms_into_about_18_categories(taxonomy):
    assert 15 <= len(taxonomy.categories) <= 22
    assert len(taxonomy.synonyms) > 200
    assert taxonomy.to_category("Watercolour") == "watercolor"
    assert taxonomy.to_category("vibrant watercolour illustration") == "watercolor"
    assert taxonomy.to_category("oil_painting") == "oil_painting"
    assert taxonomy.to_category("flat illustration") == "flat_vector"  # the longer synonym wins
    assert taxonomy.to_category("kitsch") is None


def test_taxonomy_rejects_a_synonym_under_two_categories(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("version: 2\ncategories:\n  a: [shared name]\n  b: [Shared  Name]\n")
    with pytest.raises(ValueError, match="'shared name' is listed under both 'a' and 'b'"):
        load_taxonomy(bad)
    (tmp_path / "u.yaml").write_text("categories: {}\n")
    with pytest.raises(ValueError, match="needs `version`"):
        load_taxonomy(tmp_path / "u.yaml")


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


def test_keywords_agree_with_horde_gold_classes(taxonomy, horde):
    meta = pd.read_parquet(horde / "metadata.parquet")
    df = pd.DataFrame({"image_id": "horde/" + meta["image_name"], "description": meta["prompt"], "status": "ok"})
    labels = keyword_labels(df, taxonomy, 3)
    gold = gold_classes(meta["image_name"], horde)
    report = agreement_report(labels, gold)
    assert report["keywords"]["vs_gold"]["n"] == 101
    assert report["keywords"]["vs_gold"]["any"] > 0.5  # prompts of these presets name their style
