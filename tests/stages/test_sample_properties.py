"""Property: on any DiffusionDB-layout corpus with random faults in archives, JSON, metadata and images,
sample raises nothing, reconciles in = kept + rejected, keeps only rows that decode, and is deterministic."""
from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages import sample as sample_stage
from stylemap import shards
from stylemap.corpus import demo
from stylemap.corpus.images import decode_rgb
from tests.support.fixtures import STYLES, draw, encode_png, mutate, write_params

GOOD = demo.PROMPTS["watercolor"].format("a tabby cat")
ROW_FAULTS = ["none", "none", "mutated_image", "prompt_type", "cfg_text", "seed_huge", "not_in_json",
              "not_in_zip", "corrupt_member", "empty_prompt"]
PART_FAULTS = ["none", "none", "none", "json_list", "json_latin1", "json_missing", "not_a_zip"]


def build(root: Path, row_faults: list[str], part_faults: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [{"image_name": f"img{i:03d}.png", "png": encode_png(draw(STYLES[i % 4], rng, size=48)), "prompt": GOOD,
             "cfg": 7.0, "seed": i, "part_id": 1 + i % len(part_faults)} for i in range(len(row_faults))]
    demo.write_corpus(rows, root, side=48)
    for part_id, part_fault in enumerate(part_faults, start=1):
        path = root / f"images/part-{part_id:06d}.zip"
        if not path.exists():
            continue
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read(f"part-{part_id:06d}.json"))
            members = {n: zf.read(n) for n in zf.namelist() if n.endswith(".png")}
        for row, fault in zip(rows, row_faults):
            name = row["image_name"]
            if row["part_id"] != part_id:
                continue
            if fault == "mutated_image":
                members[name] = mutate(members[name], rng)
            elif fault == "prompt_type":
                meta[name]["p"] = 42
            elif fault == "cfg_text":
                meta[name]["c"] = "high"
            elif fault == "seed_huge":
                meta[name]["se"] = 2**80
            elif fault == "not_in_json":
                del meta[name]
            elif fault == "not_in_zip":
                del members[name]
            elif fault == "empty_prompt":
                meta[name]["p"] = ""
        if part_fault == "not_a_zip":
            path.write_bytes(b"PK\x03\x04 not really a zip")
            continue
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            if part_fault == "json_list":
                zf.writestr(f"part-{part_id:06d}.json", json.dumps(list(meta)))
            elif part_fault == "json_latin1":
                zf.writestr(f"part-{part_id:06d}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8") + b"\xe9")
            elif part_fault != "json_missing":
                zf.writestr(f"part-{part_id:06d}.json", json.dumps(meta))
        for row, fault in zip(rows, row_faults):
            if fault == "corrupt_member" and row["part_id"] == part_id and part_fault != "not_a_zip":
                raw = bytearray(path.read_bytes())
                with zipfile.ZipFile(path) as zf:
                    info = zf.getinfo(row["image_name"])
                raw[info.header_offset + 30 + len(row["image_name"]) + info.compress_size // 2] ^= 0xFF
                path.write_bytes(bytes(raw))


def run(project: Path, corpus: Path) -> tuple[dict, pd.DataFrame]:
    write_params(project, {"sample": {"min_words": 5}},
                 replace={"sources": {"c": {"kind": "local", "path": str(corpus)}}, "train_source": "c", "platforms": ["c"]})
    return sample_stage.main(project)["c"], shards.read_dir(project / "data/sample/c")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row_faults=st.lists(st.sampled_from(ROW_FAULTS), min_size=1, max_size=14),
       part_faults=st.lists(st.sampled_from(PART_FAULTS), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_sample_survives_random_faults(row_faults, part_faults, seed):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(tmp / "corpus", row_faults, part_faults, seed)
        m, kept = run(tmp / "a", tmp / "corpus")
        assert m["in"] == len(row_faults) == m["kept"] + m["rejected"]
        assert len(kept) == m["kept"]
        for data in kept.get("image_bytes", []):
            assert decode_rgb(data).mode == "RGB"
        clean = {i for i, (f, p) in enumerate(zip(row_faults, [1 + i % len(part_faults) for i in range(len(row_faults))]))
                 if f == "none" and part_faults[p - 1] == "none"}
        assert {f"img{i:03d}.png" for i in clean} <= set(kept.get("image_name", []))  # faults never cost a clean row
        m2, kept2 = run(tmp / "b", tmp / "corpus")
        assert m2 == m
        pd.testing.assert_frame_equal(kept, kept2)
