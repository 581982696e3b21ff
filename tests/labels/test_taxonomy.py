import pytest

from stylemap.labels.taxonomy import load_taxonomy


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
