import pandas as pd
import pyarrow.parquet as pq
import pytest

from stylemap import schemas


def _recipes(**over):
    frame = pd.DataFrame({"image_id": ["d/a", "d/b"], "label": ["anime", "photo"], "styles": [["anime"], ["photo"]],
                          "aug_seed": [-1, 7]})
    return frame.assign(**over)


def test_a_matching_frame_is_written_with_the_schema(tmp_path):
    path = schemas.write("recipes", _recipes(), tmp_path / "r.parquet")
    assert pq.read_schema(path).equals(schemas.SCHEMAS["recipes"], check_metadata=False)


@pytest.mark.parametrize("frame, message", [
    (_recipes().drop(columns="label"), r"recipes: missing column\(s\) \['label'\]"),
    (_recipes(extra=1), r"unexpected column\(s\) \['extra'\]"),
    (_recipes(aug_seed=["x", "y"]), r"recipes: column 'aug_seed' is not int64"),
    (_recipes(aug_seed=[0.5, 1.0]), r"column 'aug_seed' is not int64"),
    (_recipes(styles=["anime", "photo"]), r"column 'styles' is not list<item: string>"),
    (_recipes(label=[None, "photo"]), r"column 'label' has 1 null value\(s\); it is required"),
])
def test_a_wrong_frame_is_an_error_naming_the_column(tmp_path, frame, message):
    with pytest.raises(schemas.SchemaError, match=message):
        schemas.write("recipes", frame, tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()


def test_empty_frames_keep_their_types():
    table = schemas.to_table("embed", schemas.empty("embed"))
    assert table.num_rows == 0 and table.schema.equals(schemas.SCHEMAS["embed"], check_metadata=False)


def test_a_plot_is_written_with_its_columns_only_and_in_order(tmp_path):
    rows = pd.DataFrame({"images": [3], "share": [1 / 3], "style": ["poster"], "month": ["2022-08"],
                         "platform": ["demo"], "extra": [1]})
    schemas.write_csv("trends", [rows, rows], tmp_path / "t.csv")
    row = "demo,2022-08,poster,0.333333,3\n"
    assert (tmp_path / "t.csv").read_text() == "platform,month,style,share,images\n" + row * 2
    schemas.write_csv("trends", [], tmp_path / "empty.csv")
    assert (tmp_path / "empty.csv").read_text() == "platform,month,style,share,images\n"
    with pytest.raises(schemas.SchemaError, match=r"trends.csv: missing column\(s\) \['images'\]"):
        schemas.write_csv("trends", [rows.drop(columns="images")], tmp_path / "bad.csv")
