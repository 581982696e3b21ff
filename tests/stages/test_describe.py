"""describe's platform subset: the train source in full, each other platform on a seeded subset, all counted."""
from __future__ import annotations

import pandas as pd

from stages import describe, label
from stylemap import shards
from tests.support.fixtures import make_project, write_params


def described(root, source: str) -> list[str]:
    return sorted(shards.read_dir(root / "data/describe" / source, columns=["image_id"])["image_id"])


def test_platforms_get_a_seeded_subset_counted_as_not_in_subset_and_the_train_source_is_described_in_full(tmp_path):
    _, frame = make_project(tmp_path, per_style=2, horde=True, overrides={"describe.platform_subset": 5,
                                                                         "label.run_llm": False})
    sampled = shards.read_dir(tmp_path / "data/sample/horde", columns=["image_id"])["image_id"]
    m = describe.main(tmp_path)
    chosen = described(tmp_path, "horde")
    assert len(chosen) == 5 and set(chosen) < set(sampled)
    assert m["horde.in"] == len(sampled) == m["horde.kept"] + m["horde.rejected"]
    assert m["horde.rejected.not_in_subset"] == len(sampled) - 5 and m["horde.kept"] == 5
    assert described(tmp_path, "demo") == sorted(frame["image_id"]) and "demo.rejected.not_in_subset" not in m

    lab = label.main(tmp_path)  # the subset file is no source of its own
    assert set(lab) == {"taxonomy_version", "categories", "demo", "horde"} and lab["horde"]["in"] == 5
    assert sorted(pd.read_parquet(tmp_path / "data/labels/horde.parquet")["image_id"]) == chosen

    train_shards = {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/describe/demo")}
    write_params(tmp_path, {"embed.loader_workers": 0, "describe.platform_subset": 7, "label.run_llm": False})
    m = describe.main(tmp_path)  # another size: new subset, same seed; the train source's shards stay
    assert len(described(tmp_path, "horde")) == 7 and m["horde.rejected.not_in_subset"] == len(sampled) - 7
    assert {f: f.stat().st_mtime_ns for f in shards.shard_files(tmp_path / "data/describe/demo")} == train_shards

    write_params(tmp_path, {"embed.loader_workers": 0, "describe.platform_subset": 0, "label.run_llm": False})
    m = describe.main(tmp_path)
    assert described(tmp_path, "horde") == sorted(sampled) and "horde.rejected.not_in_subset" not in m
    assert not list((tmp_path / "data/describe").glob("_subset.*"))  # the earlier subset file is gone
