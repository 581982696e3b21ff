import pandas as pd

from stylemap.labels.balance import balance


def _labels():
    styles = [["anime"]] * 30 + [["watercolor", "anime"]] * 6 + [["pixel_art"]] * 2 + [[]] * 3 + [["rare", "watercolor"]] * 2
    return pd.DataFrame({"image_id": [f"s/{i}" for i in range(len(styles))], "styles": styles})


def test_drop_cap_upsample_and_reconcile(make_params):
    b = make_params({"balance": {"min_count": 5, "cap": 20, "target": 10}}).balance
    recipes, report = balance(_labels(), b, seed=0)
    assert report["in"] == 43 == report["kept"] + report["rejected"]
    assert report["rejected_by"] == {"unlabelled": 3, "rare_category": 2, "over_cap": 10}
    assert report["dropped_classes"] == ["pixel_art", "rare"]
    originals = recipes[recipes.aug_seed < 0]
    assert originals.groupby("label").size().to_dict() == {"anime": 20, "watercolor": 8}
    # watercolor: 6 own + 2 whose first style "rare" was dropped, topped up to 10 with 2 augmented recipes
    copies = recipes[recipes.aug_seed >= 0]
    assert copies.groupby("label").size().to_dict() == {"watercolor": 2}
    assert set(copies.image_id) <= set(originals.image_id)
    assert all("rare" not in s for s in recipes.styles)


def test_balance_is_seeded(make_params):
    b = make_params({"balance": {"min_count": 5, "cap": 20, "target": 25}}).balance
    a, _ = balance(_labels(), b, seed=1)
    c, _ = balance(_labels(), b, seed=1)
    d, _ = balance(_labels(), b, seed=2)
    pd.testing.assert_frame_equal(a, c)
    assert not a.equals(d)
