"""A corpus's gold table: read under the source's image ids, its presets held out, a malformed table named."""
from __future__ import annotations

import pytest

from stylemap.corpus.gold import checked, held_out_presets, read_gold


def test_gold_rows_get_the_sources_ids_and_their_presets_are_held_out(tmp_path):
    (tmp_path / "styles.csv").write_text("image_name,horde_style,model,subject,style_class\n"
                                         "a.webp,ink,sd,person,sketch_lineart\nb.webp,ink,sd,place,\n"
                                         "c.webp,neon,sd,thing,\na.webp,ink,sd,person,sketch_lineart\n")
    gold = read_gold(tmp_path, "horde")
    assert gold["image_id"].tolist() == ["horde/a.webp", "horde/b.webp", "horde/c.webp"]  # the duplicate once
    assert gold["style_class"].tolist() == ["sketch_lineart", "", ""]
    assert checked(gold)["image_id"].tolist() == ["horde/a.webp"]
    assert held_out_presets(gold) == {"ink"}  # b.webp has no gold class, yet shares a's preset: held out too


def test_no_table_is_no_gold_and_a_table_without_its_columns_is_named(tmp_path):
    assert read_gold(tmp_path, "demo").empty
    (tmp_path / "styles.csv").write_text("image_name,style\na.png,anime\n")
    with pytest.raises(ValueError, match=r"styles.csv: no column\(s\) \['horde_style', 'style_class'\]"):
        read_gold(tmp_path, "demo")
