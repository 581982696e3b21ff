"""repackage: Horde through img2dataset's webdataset layout gives the images, prompts and gold of the original."""
from __future__ import annotations


import pandas as pd

from stages import repackage
from stages import sample as sample_stage
from stylemap import shards
from stylemap.labels.agreement import gold_classes
from stylemap.testing import write_params


def test_both_formats_give_the_same_sample_and_gold(tmp_path, horde):
    root = tmp_path / "p"
    common = {"kind": "local", "optional": False, "min_words": 5}
    write_params(root, {"repackage.source": str(horde)}, replace={
        "sources": {"dd": {**common, "path": str(horde)},
                    "wds": {**common, "path": "data/horde-wds", "format": "img2dataset", "layout": "webdataset"}},
        "train_source": "dd", "platforms": ["dd", "wds"]})
    counts = repackage.main(root)
    assert counts == {"absent": False, "rows": 575, "failed_to_download": 0, "shards": 3}
    metrics = sample_stage.main(root)
    dd, wds = metrics["dd"], metrics["wds"]
    assert (wds["in"], wds["kept"], wds["rejected_by"]) == (dd["in"], dd["kept"], dd["rejected_by"])
    assert wds["ignored_files"] == 1  # styles.csv, carried over beside the shards
    a = shards.read_dir(root / "data/sample/dd").sort_values("image_bytes", ignore_index=True)
    b = shards.read_dir(root / "data/sample/wds").sort_values("image_bytes", ignore_index=True)
    assert a["image_bytes"].tolist() == b["image_bytes"].tolist()  # the same images, byte for byte
    fields = ["prompt", "seed", "cfg", "steps", "sampler", "timestamp", "width", "height", "phash"]  # extra columns
    pd.testing.assert_frame_equal(a[fields], b[fields])
    gold_a = gold_classes(a["image_name"], horde)
    gold_b = gold_classes(b["image_name"], root / "data/horde-wds")
    assert gold_a.tolist() == gold_b.tolist() and (gold_b != "").sum() > 50


def test_an_absent_source_leaves_an_empty_folder_and_an_absent_platform(tmp_path):
    write_params(tmp_path, {"repackage.source": str(tmp_path / "nowhere")}, replace={
        "sources": {"demo": {"kind": "local", "path": "data/demo"},
                    "horde": {"kind": "local", "path": "data/horde-wds", "format": "img2dataset", "optional": True}}})
    assert repackage.main(tmp_path) == {"absent": True}
    assert list((tmp_path / "data/horde-wds").iterdir()) == []
    assert sample_stage.is_absent(tmp_path / "data/horde-wds")
