import pandas as pd
from PIL import Image

from stylemap import schemas
from stylemap.labels.review import INDEX, read_images, write_review
from tests.support.fixtures import sample_frame


def test_review_writes_thumbnails_and_an_index_of_the_suspects(tmp_path):
    frame = sample_frame("demo", per_style=2)
    for i in (0, 4):
        schemas.write("sample", frame.drop(columns="style").iloc[i:i + 4], tmp_path / f"sample/shard-{i}.parquet")
    wanted = ["demo/sketch-001.png", "demo/pixel_art-000.png", "demo/gone.png"]
    images = read_images(sorted((tmp_path / "sample").glob("*.parquet")), wanted)
    assert sorted(images) == sorted(wanted[:2])

    out = tmp_path / "review"
    out.mkdir()
    (out / "stale.jpg").write_bytes(b"an earlier run's suspect")
    suspects = pd.DataFrame({"image_id": wanted, "label": ["sketch", "poster", "poster"],
                             "suggested": ["poster", "pixel_art", "sketch"], "quality": [0.01, 0.02, 0.03],
                             "prompt": ["p1", "p2", "p3"]}, index=[7, 3, 9])
    assert write_review(suspects, images, out, side=48) == {"thumbnails": 2, "no_thumbnail": 1}
    assert sorted(p.name for p in out.iterdir()) == ["0000.jpg", "0001.jpg", INDEX]
    assert max(Image.open(out / "0000.jpg").size) == 48
    index = pd.read_csv(out / INDEX, keep_default_na=False)
    assert index.columns.tolist() == ["rank", "image_id", "label", "suggested", "quality", "prompt", "thumb"]
    assert index["rank"].tolist() == [0, 1, 2] and index["thumb"].tolist() == ["0000.jpg", "0001.jpg", ""]


def test_an_empty_review_still_has_its_index(tmp_path):
    empty = pd.DataFrame(columns=["image_id", "label", "suggested", "quality", "prompt"])
    assert write_review(empty, read_images([], []), tmp_path / "review", side=48) == {"thumbnails": 0, "no_thumbnail": 0}
    assert (tmp_path / "review" / INDEX).read_text().startswith("rank,image_id,")
