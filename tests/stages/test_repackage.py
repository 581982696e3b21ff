"""repackage: Horde through img2dataset's webdataset layout gives the images, prompts and gold of the original."""
from __future__ import annotations


import pandas as pd

from stages import repackage
from stages import sample as sample_stage
from stylemap import shards
from stylemap.corpus.readers.local import is_absent
from stylemap.corpus.gold import read_gold
from stylemap.labels.agreement import gold_classes
from tests.support.fixtures import write_params


def test_both_formats_give_the_same_sample_and_gold(tmp_path, horde):
    root = tmp_path / "p"
    common = {"kind": "local", "optional": False, "min_words": 5}
    write_params(root, {"repackage.source": str(horde)}, replace={
        "sources": {"dd": {**common, "path": str(horde)},
                    "wds": {**common, "path": "data/horde-wds", "format": "img2dataset", "layout": "webdataset",
                            "generator_column": "model"}},
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
    gold_a = gold_classes("dd/" + a["image_name"], read_gold(horde, "dd"))
    gold_b = gold_classes("wds/" + b["image_name"], read_gold(root / "data/horde-wds", "wds"))
    assert gold_a.tolist() == gold_b.tolist() and (gold_b != "").sum() > 50
    truth = pd.read_csv(horde / "styles.csv", dtype=str).set_index("image_name")["model"]  # Horde's model per image
    assert b["generator"].tolist() == a["image_name"].map(truth).tolist() and b["generator"].notna().all()
    assert wds["generators"] == b["generator"].value_counts().sort_index().to_dict() and wds["generator_unknown"] == 0
    assert dd["generator_unknown"] == dd["kept"]  # DiffusionDB's own layout names no model


def test_an_absent_source_leaves_an_empty_folder_and_an_absent_platform(tmp_path):
    write_params(tmp_path, {"repackage.source": str(tmp_path / "nowhere")}, replace={
        "sources": {"demo": {"kind": "local", "path": "data/demo"},
                    "horde": {"kind": "local", "path": "data/horde-wds", "format": "img2dataset", "optional": True}}})
    assert repackage.main(tmp_path) == {"absent": True}
    assert list((tmp_path / "data/horde-wds").iterdir()) == []
    assert is_absent(tmp_path / "data/horde-wds")


def test_unreadable_parts_become_failed_rows_that_sample_counts(tmp_path):
    from stylemap.corpus import demo
    from stylemap.corpus.readers import open_corpus
    from stylemap.corpus.repackage import to_webdataset
    from stylemap.params import Source

    rows = demo.build_rows(1, 64, seed=0)[:30]
    demo.write_corpus(rows, tmp_path / "dd", 64)
    lost = sorted((tmp_path / "dd/images").glob("*.zip"))[0]
    lost_rows = sum(r["part_id"] == int(lost.stem.split("-")[1]) for r in rows)
    lost.unlink()
    out = tmp_path / "wds"
    out.mkdir()
    keys, counts = to_webdataset(open_corpus(Source(kind="local", path=str(tmp_path / "dd"))), out, 8, 1 << 20)
    assert counts["rows"] == len(keys) == 30 and counts["failed_to_download"] == lost_rows > 0
    table = pd.concat([pd.read_parquet(f) for f in sorted(out.glob("*.parquet"))])
    failed = table[table["status"] == "failed_to_download"]
    assert len(failed) == lost_rows and failed["error_message"].str.startswith("part_unreadable").all()
    meta = open_corpus(Source(kind="local", path=str(out), format="img2dataset")).metadata()
    assert (meta["reject"] == "download_failed").sum() == lost_rows
