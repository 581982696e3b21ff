"""sample on real corpora (shared Horde, demo), on a corpus of bad inputs, and through a Hub-layout HTTP server."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import sample as sample_stage
from stylemap import shards
from stylemap.corpus import demo
from stylemap.corpus.images import decode_rgb
from stylemap.corpus.readers import diffusiondb
from stylemap.corpus.readers.base import CorpusError
from stylemap.paths import REPO
from tests.support.fixtures import write_diffusiondb, write_journeydb, write_params
from tests.support.hub_server import HubServer


def run_sample(make_params, tmp_path, sources: dict, **sample_over):
    """The sample stage on a project at tmp_path with these sources; returns (metrics, data/sample)."""
    write_params(tmp_path, {"sample": sample_over},
                 replace={"sources": sources, "train_source": next(iter(sources)), "platforms": [next(iter(sources))]})
    return sample_stage.main(tmp_path), tmp_path / "data/sample"


def test_horde_counts_reconcile_and_shards_hold_images(make_params, tmp_path, horde):
    metrics, out = run_sample(make_params, tmp_path, {"horde": {"kind": "local", "path": str(horde), "min_words": 5}})
    m = metrics["horde"]
    assert m["in"] == 575 and m["in"] == m["kept"] + m["rejected"]
    frame = shards.read_dir(out / "horde")
    assert len(frame) == m["kept"] > 400
    assert frame["image_id"].is_unique and frame["image_id"].str.startswith("horde/").all()
    assert frame["phash"].str.fullmatch(r"[0-9a-f]{16}").all()
    img = decode_rgb(frame["image_bytes"].iloc[0])
    assert img.mode == "RGB" and img.size == (frame["width"].iloc[0], frame["height"].iloc[0])
    rejects = pd.read_parquet(out / "rejects.parquet")
    assert len(rejects) == m["rejected"]


def test_seeded_draw_of_n(make_params, tmp_path, demo_corpus):
    src = {"demo": {"kind": "local", "path": str(demo_corpus)}}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m1, out1 = run_sample(make_params, tmp_path / "a", src, n=20)
    m2, out2 = run_sample(make_params, tmp_path / "b", src, n=20)
    assert m1 == m2 and m1["demo"]["kept"] == 20 == m1["demo"]["in"] - m1["demo"]["rejected"]  # n counts kept images
    assert shards.read_dir(out1)["image_id"].tolist() == shards.read_dir(out2)["image_id"].tolist()


def test_demo_bad_prompts_are_rejected_with_reasons(make_params, tmp_path, demo_corpus):
    metrics, _ = run_sample(make_params, tmp_path, {"demo": {"kind": "local", "path": str(demo_corpus)}})
    assert metrics["demo"]["rejected_by"] == {"cfg_out_of_range": 1, "incoherent": 1, "language": 1, "too_short": 1}
    assert metrics["demo"]["kept"] == len(demo.SUBJECTS) * len(demo.PROMPTS)


# ---------- a corpus of bad inputs ----------

GOOD = demo.PROMPTS["watercolor"].format("a tabby cat")


def _encode(image: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _bad_rows() -> list[tuple[str, bytes, object, object, str | None]]:
    """(name, bytes, prompt, cfg, expected reject reason or None if kept)."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    png = _encode(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rows = [
        ("ok.png", png, GOOD, 7.0, None),
        ("zero.png", b"", GOOD, 7.0, "zero_bytes"),
        ("truncated.png", png[: len(png) // 2], GOOD, 7.0, "undecodable"),
        ("text.png", b"this is not an image at all", GOOD, 7.0, "undecodable"),
        ("cmyk.jpg", _encode(rgb.convert("CMYK"), "JPEG"), GOOD, 7.0, None),
        ("sixteen.png", _encode(Image.fromarray((np.arange(64 * 80).reshape(64, 80) * 12).astype(np.uint16))), GOOD, 7.0, None),
        ("rgba.png", _encode(rgb.convert("RGBA")), GOOD, 7.0, None),
        ("palette.png", _encode(rgb.convert("P")), GOOD, 7.0, None),
        ("animated.gif", _encode(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P")] * 2), GOOD, 7.0, None),
        ("exif.jpg", _encode(rgb, "JPEG", exif=exif), GOOD, 7.0, None),
        ("tiny.png", _encode(Image.new("RGB", (1, 1))), GOOD, 7.0, "too_small"),
        ("bomb.png", _encode(Image.new("1", (9000, 9000))), GOOD, 7.0, "too_many_pixels"),
        ("empty.png", png, "", 7.0, "empty_prompt"),
        ("none.png", png, None, 7.0, "empty_prompt"),
        ("emoji.png", png, "🎨🐱✨🌈🔥💫 " * 5, 7.0, "incoherent"),
        ("french.png", png, demo.BAD_PROMPTS[0][0], 7.0, "language"),
        ("short.png", png, "a cat", 7.0, "too_short"),
        ("long.png", png, (GOOD + " ") * 100, 7.0, None),
        ("nan.png", png, GOOD, float("nan"), None),  # unknown CFG is kept: DiffusionDB-layout corpora have nulls
        ("negative.png", png, GOOD, -3.0, "cfg_out_of_range"),
    ]
    return rows


def _write_bad_corpus(root: Path, drop_json_of_part2: bool = True) -> dict[str, str | None]:
    rows = [{"image_name": n, "png": b, "prompt": p, "cfg": c, "seed": 1, "part_id": 1} for n, b, p, c, _ in _bad_rows()]
    rows.append({"image_name": "ok.png", "png": rows[0]["png"], "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 1})  # duplicate name
    rows.append({"image_name": "orphan.png", "png": rows[0]["png"], "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 2})
    demo.write_corpus(rows, root, side=64)
    meta = pd.read_parquet(root / "metadata.parquet")
    ghost = meta.iloc[[0]].assign(image_name="ghost.png")
    pd.concat([meta, ghost]).to_parquet(root / "metadata.parquet", index=False)
    if drop_json_of_part2:
        with zipfile.ZipFile(root / "images" / "part-000002.zip", "w") as zf:
            zf.writestr("orphan.png", rows[0]["png"])
    expected = {n: r for n, _, _, _, r in _bad_rows()}
    expected.update({"orphan.png": "part_unreadable", "ghost.png": "not_in_part"})
    return expected


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_bad_inputs_are_counted_rejects(make_params, tmp_path):
    expected = _write_bad_corpus(tmp_path / "bad")
    metrics, out = run_sample(make_params, tmp_path, {"bad": {"kind": "local", "path": str(tmp_path / "bad")}}, n=1000)
    m = metrics["bad"]
    rejects = pd.read_parquet(out / "rejects.parquet")
    by_name = dict(zip(rejects["image_name"], rejects["reason"]))
    # the duplicate of ok.png is rejected as such; the first copy is kept
    assert rejects["reason"].value_counts()["duplicate_name"] == 1
    for name, reason in expected.items():
        if reason is None:
            assert name not in by_name or name == "ok.png", f"{name} rejected as {by_name.get(name)}"
        else:
            assert by_name.get(name) == reason, f"{name}: expected {reason}, got {by_name.get(name)}"
    assert "orphan.png" in rejects.loc[rejects.reason == "part_unreadable", "image_name"].tolist()
    assert "part-000002.json missing" in rejects.loc[rejects.image_name == "orphan.png", "detail"].iloc[0]
    assert m["in"] == len(expected) + 1 == m["kept"] + m["rejected"]
    kept = shards.read_dir(out / "bad").set_index("image_name")
    assert set(kept.index) == {n for n, r in expected.items() if r is None}
    assert m["converted_from"]["CMYK"] == 1 and m["converted_from"]["RGBA"] == 1
    rotated = decode_rgb(kept.loc["exif.jpg", "image_bytes"])
    assert rotated.size == (64, 80)  # EXIF orientation applied: 80x64 stored, shown upright as 64x80
    grey16 = np.asarray(decode_rgb(kept.loc["sixteen.png", "image_bytes"]))
    assert grey16.max() > 0 and grey16.min() < 255 and len(np.unique(grey16)) > 50  # scaled, not clipped white
    assert kept.loc["long.png", "prompt"].startswith(GOOD)


def test_missing_metadata_and_missing_source_are_clear_errors(make_params, tmp_path, demo_corpus):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="does not exist or is empty"):  # an empty folder: a corpus not yet fetched
        run_sample(make_params, tmp_path, {"x": {"kind": "local", "path": str(tmp_path / "empty")}})
    (tmp_path / "empty" / "notes.txt").write_text("not a corpus")
    with pytest.raises(CorpusError, match="metadata.parquet not found"):
        run_sample(make_params, tmp_path, {"x": {"kind": "local", "path": str(tmp_path / "empty")}})
    with pytest.raises(CorpusError, match="does not exist"):
        run_sample(make_params, tmp_path, {"x": {"kind": "local", "path": str(tmp_path / "nowhere")}})
    metrics, _ = run_sample(make_params, tmp_path, {"demo": {"kind": "local", "path": str(demo_corpus)},
                                                    "x": {"kind": "local", "path": str(tmp_path / "nowhere"), "optional": True}})
    assert metrics["x"] == {"absent": True} and metrics["demo"]["kept"] > 0


# ---------- the Hub, through a local stand-in (tests.support.hub_server) ----------

def test_hf_source_reads_the_drawn_images_by_range_and_stores_no_part(make_params, tmp_path, horde):
    with HubServer(horde) as hub:
        src = {"hub": {"kind": "hf", "path": "poloclub/diffusiondb", "endpoint": hub.endpoint,
                       "cache_dir": str(tmp_path / "cache"), "min_words": 5}}
        metrics, out = run_sample(make_params, tmp_path, src, n=5)
        opened = len(list((out / "hub" / "_parts").glob("*.json")))
        assert hub.traffic["resolve"] == 2 + opened < 2 + 6  # the commit, metadata.parquet, a part each; not all 6
        assert metrics["hub"]["kept"] == 5 and metrics["hub"]["in"] == 5 + metrics["hub"]["rejected"]
        blobs = [p for p in (tmp_path / "cache").rglob("blobs/*")]
        assert [p.stat().st_size for p in blobs] == [(horde / "metadata.parquet").stat().st_size]  # no part on disk
        before = hub.traffic.copy()
        run_sample(make_params, tmp_path, src, n=5)  # a rerun: metadata from the cache, every part resumed
        assert hub.traffic - before == {"resolve": 1}  # where the revision points now


def test_rerun_after_a_crash_redoes_only_unfinished_parts(make_params, tmp_path, horde, monkeypatch):
    src = {"horde": {"kind": "local", "path": str(horde), "min_words": 5}}
    first, out = run_sample(make_params, tmp_path, src)
    before = {f.name: f.read_bytes() for f in shards.shard_files(out / "horde")}
    (out / "horde" / "_parts" / "r00-part-000004.json").unlink()  # part 4 was in flight when the run died
    opened = []
    real = diffusiondb.Corpus.open_part
    monkeypatch.setattr(diffusiondb.Corpus, "open_part",
                        lambda self, part_id, cap: opened.append(part_id) or real(self, part_id, cap))
    again, _ = run_sample(make_params, tmp_path, src)
    assert opened == [4]
    assert again == first
    assert {f.name: f.read_bytes() for f in shards.shard_files(out / "horde")} == before


def test_hf_source_in_diffusiondb_large_layout(make_params, tmp_path, horde):
    """Large keeps WebP parts under diffusiondb-large-part-{1,2}/ and metadata in metadata-large.parquet."""
    root = tmp_path / "hub"
    (root / "diffusiondb-large-part-1").mkdir(parents=True)
    for z in (horde / "images").glob("part-*.zip"):
        (root / "diffusiondb-large-part-1" / z.name).symlink_to(z)
    (root / "metadata-large.parquet").symlink_to(horde / "metadata.parquet")
    with HubServer(root) as hub:
        src = {"large": {"kind": "hf", "path": "poloclub/diffusiondb", "layout": "large", "min_words": 5,
                         "endpoint": hub.endpoint, "cache_dir": str(tmp_path / "cache")}}
        metrics, out = run_sample(make_params, tmp_path, src, n=3)
    assert metrics["large"]["kept"] == 3 and shards.read_dir(out / "large")["image_name"].str.endswith(".webp").all()
    assert list((tmp_path / "cache").rglob("metadata-large.parquet"))


def test_a_changed_corpus_is_sampled_again_not_resumed(tmp_path):
    """Resume fingerprints cover the corpus files: rebuilding the demo at another side must not serve old shards."""
    from stages import demo as demo_stage

    sides = []
    for side in (64, 96):
        write_params(tmp_path, {"demo.side": side, "demo.crops_per_subject": 1, "sample.n": 8},
                     replace={"sources": {"demo": {"kind": "local", "path": "data/demo"}}, "platforms": ["demo"]})
        demo_stage.main(tmp_path)
        sample_stage.main(tmp_path)
        sides.append(set(shards.read_dir(tmp_path / "data/sample/demo", columns=["width"])["width"]))
    assert sides == [{64}, {96}]


# ---------- archive and metadata faults ----------

def _patch_zip(path: Path, member: str, *, flags: int | None = None, method: int | None = None,
               corrupt_data: bool = False) -> None:
    """Rewrite one member's local and central headers (flag bits, compression method) or flip a data byte."""
    import struct

    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[local + 26:local + 30])
    data_start = local + 30 + name_len + extra_len
    central = raw.index(member.encode(), raw.index(b"PK\x01\x02")) - 46
    for base, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
        if flags is not None:
            raw[base + flag_at:base + flag_at + 2] = struct.pack("<H", flags)
        if method is not None:
            raw[base + method_at:base + method_at + 2] = struct.pack("<H", method)
    if corrupt_data:
        raw[data_start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_archive_and_metadata_faults_are_counted_rejects(tmp_path):
    png = _encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    faults = {  # image_name -> (part JSON entry changes, expected reason)
        "good.png": ({}, None), "crc.png": ({}, "member_unreadable"), "deflate.png": ({}, "member_unreadable"),
        "method.png": ({}, "member_unreadable"), "locked.png": ({}, "member_unreadable"),
        "huge.png": ({}, "member_too_large"),
        "p_int.png": ({"p": 123}, "bad_field"), "c_text.png": ({"c": "high"}, "bad_field"),
        "se_big.png": ({"se": 2**70}, "bad_field"), "st_frac.png": ({"st": 1.5}, "bad_field"),
        "sa_list.png": ({"sa": [1]}, "bad_field"), "surrogate.png": ({"p": GOOD + " \ud800"}, "bad_field"),
    }
    rows = [{"image_name": n, "png": png, "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 1} for n in faults]
    rows += [{"image_name": n, "png": png, "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 2} for n in ("list_json.png",)]
    rows += [{"image_name": n, "png": png, "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 3} for n in ("latin1_json.png",)]
    root = tmp_path / "faulty"
    demo.write_corpus(rows, root, side=64)
    part1 = root / "images/part-000001.zip"
    with zipfile.ZipFile(part1) as zf:
        meta = json.loads(zf.read("part-000001.json"))
        members = {n: zf.read(n) for n in zf.namelist() if n.endswith(".png")}
    for name, (change, _) in faults.items():
        meta[name].update(change)
    with zipfile.ZipFile(part1, "w") as zf:
        for name, data in members.items():
            if name == "huge.png":
                data = data + b"\0" * 4096  # inflates past the cap below
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("part-000001.json", json.dumps(meta))
    _patch_zip(part1, "crc.png", corrupt_data=True)
    _patch_zip(part1, "method.png", method=99)
    _patch_zip(part1, "locked.png", flags=0x1)
    _patch_zip(part1, "deflate.png", corrupt_data=True)
    with zipfile.ZipFile(root / "images/part-000002.zip", "w") as zf:
        zf.writestr("list_json.png", png)
        zf.writestr("part-000002.json", json.dumps([1, 2]))
    with zipfile.ZipFile(root / "images/part-000003.zip", "w") as zf:
        zf.writestr("latin1_json.png", png)
        zf.writestr("part-000003.json", json.dumps({"latin1_json.png": {"p": "café"}}, ensure_ascii=False).encode("latin-1"))
    meta_frame = pd.read_parquet(root / "metadata.parquet")
    extra = meta_frame.iloc[[0, 0, 0]].assign(image_name=["null_part.png", "str_part.png", "float_part.png"])
    extra["part_id"] = [None, "two", "1.5"]  # one parquet column holds one type: part ids as text, as some exports do
    meta_frame = pd.concat([meta_frame.assign(part_id=meta_frame["part_id"].astype(str)), extra], ignore_index=True)
    meta_frame.to_parquet(root / "metadata.parquet", index=False)
    (root / "images/nested").mkdir()
    (root / "images/nested/metadata.parquet").write_bytes(b"a stray copy must not shadow the real file")

    metrics, out = run_sample(None, tmp_path / "project", {"faulty": {"kind": "local", "path": str(root)}},
                              n=100, max_member_bytes=len(png) + 1024)
    m = metrics["faulty"]
    by_name = pd.read_parquet(out / "rejects.parquet").set_index("image_name")
    for name, (_, reason) in faults.items():
        assert (by_name["reason"].get(name)) == reason, (name, by_name.loc[name].to_dict() if name in by_name.index else None)
    assert by_name.loc["list_json.png", "reason"] == "part_unreadable" and "must hold an object" in by_name.loc["list_json.png", "detail"]
    assert by_name.loc["latin1_json.png", "reason"] == "part_unreadable" and "not UTF-8" in by_name.loc["latin1_json.png", "detail"]
    assert {by_name.loc[n, "reason"] for n in ("null_part.png", "str_part.png", "float_part.png")} == {"bad_part_id"}
    assert "outside int64" in by_name.loc["se_big.png", "detail"] and "prompt" in by_name.loc["p_int.png", "detail"]
    assert m["in"] == len(faults) + 2 + 3 == m["kept"] + m["rejected"] and m["kept"] == 1
    assert m["ignored_files"] == 1  # the stray metadata copy, read by path: never in place of the real one


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    write_params(tmp_path, replace={"sources": {"demo": {"kind": "local", "path": "missing"}}, "platforms": ["demo"]})
    done = subprocess.run([sys.executable, "-m", "stages.sample"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "stage sample: error: source 'demo': missing does not exist or is empty"


def test_nsfw_scores_above_their_params_are_counted_rejects(tmp_path):
    png = _encode(Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    names = ["clean.png", "unknown.png", "image.png", "prompt.png"]
    rows = [{"image_name": n, "png": png, "prompt": GOOD, "cfg": 7.0, "seed": 1, "part_id": 1} for n in names]
    root = tmp_path / "nsfw"
    demo.write_corpus(rows, root, side=64)
    meta = pd.read_parquet(root / "metadata.parquet")
    meta["image_nsfw"] = pd.Series([0.1, None, 0.9, 0.2], dtype="float32")
    meta["prompt_nsfw"] = pd.Series([0.0, None, 0.0, 0.7], dtype="float32")
    meta.to_parquet(root / "metadata.parquet", index=False)
    metrics, out = run_sample(None, tmp_path / "project", {"x": {"kind": "local", "path": str(root)}},
                              max_image_nsfw=0.5, max_prompt_nsfw=0.5)
    rejects = pd.read_parquet(out / "rejects.parquet").set_index("image_name")
    assert rejects["reason"].to_dict() == {"image.png": "nsfw_image", "prompt.png": "nsfw_prompt"}
    assert rejects.loc["image.png", "detail"] == "image_nsfw=0.900 > 0.5"
    assert metrics["x"]["kept"] == 2 and metrics["x"]["in"] == 4  # a missing score is kept


def test_an_excluded_source_never_draws_what_the_other_drew(make_params, tmp_path, horde):
    """The study's DiffusionDB analysis sample is disjoint from the training sample: same corpus, no shared image."""
    train = {"kind": "local", "path": str(horde), "min_words": 0}
    analysis = {**train, "exclude": ["train"], "n": 300}  # the study: 500k training, 300k disjoint analysis
    metrics, out = run_sample(make_params, tmp_path, {"train": train, "analysis": analysis}, n=250)
    names = {s: set(shards.read_dir(out / s)["image_name"]) for s in ("train", "analysis")}
    drawn = {s: names[s] | set(pd.read_parquet(out / "rejects.parquet").query("source == @s")["image_name"])
             for s in ("train", "analysis")}
    assert len(drawn["train"]) == 250 and len(drawn["analysis"]) == 300 and not drawn["train"] & drawn["analysis"]
    assert metrics["analysis"]["excluded_as_drawn_by"] == {"sources": ["train"], "rows": 250}
    with pytest.raises(Exception, match="must be a source listed before"):
        run_sample(make_params, tmp_path, {"a": {**train, "exclude": ["b"]}, "b": train})


def test_midjourney_parameters_are_stripped_before_the_filters_and_counted(make_params, tmp_path, horde):
    corpus = tmp_path / "mj"
    shutil.copytree(horde, corpus)
    meta = pd.read_parquet(corpus / "metadata.parquet")
    for part in sorted((corpus / "images").glob("*.zip")):  # the prompt lives in each part's JSON too
        with zipfile.ZipFile(part) as zf:
            entries = {n: zf.read(n) for n in zf.namelist()}
        name = part.stem + ".json"
        table = json.loads(entries[name])
        for entry in table.values():
            entry["p"] = entry["p"] + " --ar 16:9 --v 5"
        entries[name] = json.dumps(table).encode()
        with zipfile.ZipFile(part, "w") as zf:
            for n, data in entries.items():
                zf.writestr(n, data)
    src = {"kind": "local", "path": str(corpus), "min_words": 5}
    plain, out = run_sample(make_params, tmp_path / "plain", {"mj": src})
    stripped, out2 = run_sample(make_params, tmp_path / "strip", {"mj": {**src, "syntax": "midjourney"}})
    assert stripped["mj"]["syntax_stripped"]["parameters"] == 2 * stripped["mj"]["syntax_stripped"]["prompts_with_parameters"]
    assert stripped["mj"]["syntax_stripped"]["prompts_with_parameters"] >= stripped["mj"]["kept"] > 0
    prompts = shards.read_dir(out2 / "mj")["prompt"]
    assert not prompts.str.contains("--").any()
    assert shards.read_dir(out / "mj")["prompt"].str.endswith("--ar 16:9 --v 5").all() and not plain["mj"]["syntax_stripped"]
    assert len(meta) == 575


@pytest.mark.parametrize("fmt", ["diffusiondb", "journeydb"])
def test_a_corpus_whose_table_has_no_rows_samples_nothing_and_says_so(tmp_path, fmt):
    corpus = tmp_path / "corpus"
    if fmt == "diffusiondb":
        write_diffusiondb(corpus, parts=1, per_part=4)
        pd.read_parquet(corpus / "metadata.parquet").head(0).to_parquet(corpus / "metadata.parquet")
    else:
        write_journeydb(corpus, lines=[], parts={0: {}})
    write_params(tmp_path / "p", replace={"sources": {"empty": {"kind": "local", "path": str(corpus), "format": fmt}},
                                          "train_source": "empty", "platforms": ["empty"]})
    counts = sample_stage.main(tmp_path / "p")["empty"]
    assert (counts["in"], counts["kept"], counts["rejected"], counts["rejected_by"]) == (0, 0, 0, {})
    assert shards.read_dir(tmp_path / "p/data/sample/empty").empty
