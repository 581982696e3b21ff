"""Hostile inputs to every reader, by class (issue 24): text that is not UTF-8 (2), tables whose types disagree
with the sample schema (3), files that are not regular or lead outside the corpus (4), decompression without
bounds (5) and the resume fingerprint through links (7). Each case is a small corpus built here with two good
images beside the bad input: the good ones are kept, the bad one is a counted reject with its reason (or the
stage stops with one line naming the file), and in = kept + rejected. The Hub's faults are in test_hub.py, the
CLI's in tests/test_cli.py."""
from __future__ import annotations

import gzip
import io
import json
import os
import signal
import tarfile
import tracemalloc
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylemap import shards
from stylemap.corpus import demo
from stylemap.corpus.readers import journeydb, local, open_corpus
from stylemap.corpus.sampling import sample_source
from stylemap.entry import UserError
from stylemap.params import Source
from tests.support.fixtures import STYLES, draw, encode_png, make_params, write_journeydb

GOOD = demo.PROMPTS["watercolor"].format("a tabby cat")
I2D = pa.schema([("caption", pa.string()), ("key", pa.string()), ("status", pa.string())])


def png(i: int) -> bytes:
    return encode_png(draw(STYLES[i % 4], np.random.default_rng(i), size=48))


@contextmanager
def within(seconds: int):
    """A hang guard, not a timing assertion: a read that blocks (a pipe opened) fails the test instead of CI."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s: a read blocked")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sample(src: Source, out: Path) -> tuple[dict[str, str], pd.DataFrame, int]:
    """({image name: reject reason} with "kept" for kept rows, kept shards, files ignored); in = kept + rejected."""
    with within(120):
        drawn, tally, ignored, _, _ = sample_source("x", src, make_params({"sample.n": 1000}).sample, 0, out, "test")
    tally.report(drawn, "x")  # raises unless in = kept + rejected
    outcome = {r["image_name"]: r["reason"] for r in tally.rows} | {name: "kept" for _, name in tally.kept_rows}
    assert len(outcome) == drawn
    return outcome, shards.read_dir(out), ignored


def stops(src: Source, out: Path, match: str) -> None:
    """The stage stops with one clear line (a UserError naming the file), within the hang guard."""
    with within(120), pytest.raises(UserError, match=match) as err:
        sample_source("x", src, make_params({"sample.n": 1000}).sample, 0, out, "test")
    assert "\n" not in str(err.value)


# ---------- corpus builders: two good images, and the case's bad input ----------

def jdb(root: Path, lines: list[str | dict | bytes], parts: dict | None = None) -> Source:
    """A JourneyDB split: two good annotation lines, then `lines` (bytes written as they are), over a part 000
    holding good0..good2.png."""
    write_journeydb(root, [], parts or {0: {f"000/good{i}.png": png(i) for i in range(3)}})
    good = [{"img_path": f"000/good{i}.png", "prompt": GOOD, "Task1": {"Style": ["watercolor"]}} for i in range(2)]
    body = b"".join((line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line)).encode())
                    + b"\n" for line in good + lines)
    _gzip_tar(root / "data/train" / journeydb.ANNOTATIONS["train"], "train.jsonl", [body], len(body))
    return Source(kind="local", path=str(root), format="journeydb")


def folder(root: Path, prompts: bytes | None = None, suffix: str = "csv", extra: dict | None = None,
           columns: bytes = b"") -> Source:
    """A folder of good0/good1.png with a prompts file naming them, then the bytes `prompts`; `extra` files by
    their name's bytes; `columns` more CSV header columns (the good rows leave them empty)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        (root / f"good{i}.png").write_bytes(png(i))
    for name, data in (extra or {}).items():
        Path(os.fsdecode(bytes(root) + b"/" + name)).write_bytes(data)
    rows = "".join(f'good{i}.png,"{GOOD}"' + "," * columns.count(b",") + "\n" for i in range(2)).encode()
    body = b"file_name,prompt" + columns + b"\n" + rows if suffix == "csv" else b"".join(
        json.dumps({"file_name": f"good{i}.png", "prompt": GOOD}).encode() + b"\n" for i in range(2))
    (root / f"prompts.{suffix}").write_bytes(body + (prompts or b""))
    return Source(kind="local", path=str(root), format="folder")


def i2d(root: Path, bad: dict | None = None, schema: pa.Schema = I2D, layout: str = "webdataset") -> Source:
    """Shard 00000 with two good rows; shard 00001 with the row `bad`, its table typed by `schema`."""
    root.mkdir(parents=True, exist_ok=True)
    _shard(root, "00000", [{"caption": GOOD, "key": f"00000000{i}", "status": "success"} for i in range(2)], I2D, layout)
    if bad:
        _shard(root, "00001", [bad], schema, layout)
    return Source(kind="local", path=str(root), format="img2dataset", layout=layout)


def _shard(root: Path, name: str, rows: list[dict], schema: pa.Schema, layout: str) -> None:
    images = {r["key"]: png(int(r["key"])) for r in rows if isinstance(r["key"], str)}
    if layout == "parquet":
        schema = schema if "png" in schema.names else schema.append(pa.field("png", pa.binary()))
        rows = [{"png": images.get(r["key"]), **r} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema), root / f"{name}.parquet")
    if layout == "webdataset":
        with tarfile.open(root / f"{name}.tar", "w") as tar:
            for key, data in images.items():
                info = tarfile.TarInfo(f"{key}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def ddb(root: Path, change: dict | None = None, schema: dict | None = None, table_only: bool = False) -> Source:
    """A DiffusionDB 2M corpus of three rows img0..img2.png. `change` sets row 2's metadata columns, typed by
    `schema` (the other rows: null, or part 1 in that type); `table_only` drops row 2's fields from the part JSON,
    so that the table's values are the ones read."""
    rows = [{"image_name": f"img{i}.png", "png": png(i), "prompt": GOOD, "cfg": 7.0, "seed": i, "part_id": 1}
            for i in range(3)]
    demo.write_corpus(rows, root, side=48)
    table = pa.Table.from_pandas(pd.read_parquet(root / "metadata.parquet"), preserve_index=False)
    for column, value in (change or {}).items():
        kind = (schema or {}).get(column) or table.schema.field(column).type
        other = {"part_id": 1.0 if pa.types.is_floating(kind) else "1"}.get(column) if column == "part_id" else None
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array([other, other, value], kind))
    pq.write_table(table.replace_schema_metadata(None), root / "metadata.parquet")  # no pandas dtypes to restore
    if table_only:
        _part_entry(root, {})
    return Source(kind="local", path=str(root))


def _part_entry(root: Path, entry: dict) -> None:
    """Row 2's entry in part-000001.json replaced by `entry` (a surrogate is written as its \\u escape)."""
    path = root / "images/part-000001.zip"
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members["part-000001.json"])
    members["part-000001.json"] = json.dumps({**meta, "img2.png": entry}).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _gzip_tar(path: Path, name: str, payload, size: int) -> None:
    """A .tgz holding one member of `size` bytes streamed from the iterable `payload` (never held whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        info = tarfile.TarInfo(name)
        info.size = size
        gz.write(info.tobuf(format=tarfile.GNU_FORMAT))
        for chunk in payload:
            gz.write(chunk)
        gz.write(b"\0" * (-size % 512 + 1024))


# ---------- class 2: text that is not valid UTF-8 ----------

TEXT_CASES = {  # case: (corpus builder, the bad row's name as the reject carries it, reason)
    "jdb_surrogate_prompt": (lambda r: jdb(r, ['{"img_path": "000/good2.png", "prompt": "a \\ud800 cat"}']),
                             "000/good2.png", "bad_text"),
    "jdb_surrogate_img_path": (lambda r: jdb(r, ['{"img_path": "000/x\\udc80.png", "prompt": "p"}']),
                               "000/x\\udc80.png", "bad_text"),
    "jdb_surrogate_style": (lambda r: jdb(r, ['{"img_path": "000/good2.png", "prompt": "p", '
                                              '"Task1": {"Style": ["oil \\udcff"]}}']), "000/good2.png", "bad_text"),
    "jdb_latin1_bytes": (lambda r: jdb(r, [b'{"img_path": "000/good2.png", "prompt": "caf\xe9"}']), "line-3",
                         "bad_annotation"),
    "folder_latin1_file_name": (lambda r: folder(r, extra={b"caf\xe9.png": png(2)}), "caf\\udce9.png", "bad_text"),
    "folder_csv_latin1_prompt": (lambda r: folder(r, b"good2.png,caf\xe9 au lait in watercolor\n",
                                                  extra={b"good2.png": png(2)}), "good2.png", "bad_text"),
    "folder_jsonl_surrogate_prompt": (lambda r: folder(r, b'{"file_name": "good2.png", "prompt": "a \\udc80"}\n',
                                                       "jsonl", extra={b"good2.png": png(2)}), "good2.png", "bad_text"),
    "folder_jsonl_latin1_prompt": (lambda r: folder(r, b'{"file_name": "good2.png", "prompt": "caf\xe9"}\n', "jsonl",
                                                    extra={b"good2.png": png(2)}), "good2.png", "bad_text"),
    "folder_csv_latin1_file_name": (lambda r: folder(r, b'caf\xe9.png,"' + GOOD.encode() + b'"\n',
                                                     extra={b"caf\xe9.png": png(2)}), "caf\\udce9.png", "bad_text"),
    "jdb_latin1_img_path": (lambda r: jdb(r, [b'{"img_path": "000/caf\xe9.png", "prompt": "p"}']), "line-3",
                            "bad_annotation"),
    "folder_csv_latin1_sampler": (lambda r: folder(r, b'good2.png,"' + GOOD.encode() + b'",k_\xe9uler\n',
                                                   extra={b"good2.png": png(2)}, columns=b",sampler"),
                                  "good2.png", "bad_text"),
    "ddb_part_json_surrogate": (lambda r: _ddb_with_entry(r, {"p": "a \udc80 cat"}), "img2.png", "bad_field"),
    "i2d_binary_caption": (lambda r: i2d(r, {"caption": b"caf\xe9", "key": "000010000", "status": "success"},
                                         I2D.set(0, pa.field("caption", pa.binary()))), "000010000", "bad_field"),
}


def _ddb_with_entry(root: Path, entry: dict) -> Source:
    src = ddb(root)
    _part_entry(root, entry)
    return src


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_text_that_is_not_utf8_is_one_counted_reject(case, tmp_path):
    build, name, reason = TEXT_CASES[case]
    outcome, kept, _ = sample(build(tmp_path / "corpus"), tmp_path / "out")
    assert outcome.pop(name) == reason, outcome
    assert sorted(outcome.values()) == ["kept", "kept"] and len(kept) == 2
    for column in ("image_name", "prompt"):
        kept[column].map(lambda v: v.encode("utf-8"))  # stored text is UTF-8


# ---------- class 3: types that disagree with the sample schema ----------

NS = pa.timestamp("ns", tz="UTC")
STAMP = pd.Timestamp("2022-08-03 10:00:00.123456789", tz="UTC")
BAD = {"caption": GOOD, "key": "000010000", "status": "success"}  # an img2dataset row, to spoil one column of
TYPE_CASES = {  # case: (corpus builder, bad row's name, its outcome)
    "ddb_timestamp_ns": (lambda r: ddb(r, {"timestamp": STAMP}, {"timestamp": NS}), "img2.png", "kept"),
    "ddb_timestamp_epoch_ms": (lambda r: ddb(r, {"timestamp": 1_659_520_800_123}, {"timestamp": pa.int64()}),
                               "img2.png", "kept"),
    "ddb_timestamp_epoch_s_float": (lambda r: ddb(r, {"timestamp": 1_659_520_800.5}, {"timestamp": pa.float64()}),
                                    "img2.png", "kept"),
    "ddb_timestamp_text": (lambda r: ddb(r, {"timestamp": "2022-08-03T10:00:00Z"}, {"timestamp": pa.string()}),
                           "img2.png", "kept"),
    "ddb_timestamp_garbage": (lambda r: ddb(r, {"timestamp": "last tuesday"}, {"timestamp": pa.string()}),
                              "img2.png", "bad_field"),
    "ddb_timestamp_out_of_range": (lambda r: ddb(r, {"timestamp": 10**19}, {"timestamp": pa.uint64()}),
                                   "img2.png", "bad_field"),
    "ddb_part_id_huge": (lambda r: ddb(r, {"part_id": 1e30}, {"part_id": pa.float64()}), "img2.png", "bad_part_id"),
    "ddb_part_id_text": (lambda r: ddb(r, {"part_id": "one"}, {"part_id": pa.string()}), "img2.png", "bad_part_id"),
    "ddb_nsfw_text": (lambda r: ddb(r, {"image_nsfw": "low"}, {"image_nsfw": pa.string()}), "img2.png", "bad_field"),
    "ddb_prompt_list": (lambda r: ddb(r, {"prompt": ["a", "b"]}, {"prompt": pa.list_(pa.string())}, True),
                        "img2.png", "bad_field"),
    "ddb_seed_text": (lambda r: ddb(r, {"seed": "abc"}, {"seed": pa.string()}, True), "img2.png", "bad_field"),
    "ddb_cfg_bool": (lambda r: ddb(r, {"cfg": True}, {"cfg": pa.bool_()}, True), "img2.png", "bad_field"),
    "i2d_status_list": (lambda r: i2d(r, {**BAD, "status": ["success"]},
                                      I2D.set(2, pa.field("status", pa.list_(pa.string())))), "000010000", "bad_field"),
    "i2d_status_int": (lambda r: i2d(r, {**BAD, "status": 1}, I2D.set(2, pa.field("status", pa.int64()))),
                       "000010000", "bad_field"),
    "i2d_key_int": (lambda r: i2d(r, {**BAD, "key": 10000}, I2D.set(1, pa.field("key", pa.int64()))), "None",
                    "bad_image_name"),  # not text, so no name: the reject row says so
    "i2d_caption_int": (lambda r: i2d(r, {**BAD, "caption": 5}, I2D.set(0, pa.field("caption", pa.int64()))),
                        "000010000", "bad_field"),
    **{f"i2d_image_column_{kind}": (lambda r, t=t, v=v: i2d(r, {**BAD, "png": v}, I2D.append(pa.field("png", t)),
                                                            "parquet"), "000010000", "bad_field")
       for kind, t, v in [("int", pa.int64(), 3), ("float", pa.float64(), 0.5), ("bool", pa.bool_(), True)]},
    "folder_jsonl_prompt_number": (lambda r: folder(r, b'{"file_name": "good2.png", "prompt": 12}\n', "jsonl",
                                                    extra={b"good2.png": png(2)}), "good2.png", "bad_field"),
    "folder_jsonl_prompt_list": (lambda r: folder(r, b'{"file_name": "good2.png", "prompt": ["a"]}\n', "jsonl",
                                                  extra={b"good2.png": png(2)}), "good2.png", "bad_field"),
    "jdb_prompt_number": (lambda r: jdb(r, ['{"img_path": "000/good2.png", "prompt": 12}']), "000/good2.png",
                          "bad_field"),
    "jdb_img_path_number": (lambda r: jdb(r, ['{"img_path": 12, "prompt": "p"}']), "line-3", "bad_annotation"),
    "jdb_task1_list": (lambda r: jdb(r, [{"img_path": "000/good2.png", "prompt": GOOD, "Task1": ["oil"]}]),
                       "000/good2.png", "kept"),
}


@pytest.mark.parametrize("case", sorted(TYPE_CASES))
def test_a_type_quirk_is_converted_or_one_counted_reject(case, tmp_path):
    build, name, expected = TYPE_CASES[case]
    outcome, kept, _ = sample(build(tmp_path / "corpus"), tmp_path / "out")
    assert outcome.pop(name) == expected, outcome
    assert sorted(outcome.values()) == ["kept", "kept"]


def test_timestamps_convert_to_microseconds_and_are_counted(tmp_path):
    for i, (value, kind, want) in enumerate([
            (STAMP, NS, ("2022-08-03 10:00:00.123456", "timestamp[ns]")),
            (1_659_520_800_123, pa.int64(), ("2022-08-03 10:00:00.123", "timestamp[epoch ms]")),
            (1_659_520_800, pa.int64(), ("2022-08-03 10:00:00", "timestamp[epoch s]"))]):
        ddb(tmp_path / f"c{i}", {"timestamp": value}, {"timestamp": kind})
        drawn, tally, *_ = sample_source("x", Source(kind="local", path=str(tmp_path / f"c{i}")),
                                         make_params({"sample.n": 1000}).sample, 0, tmp_path / f"o{i}", "test")
        kept = shards.read_dir(tmp_path / f"o{i}").set_index("image_name")
        assert kept.loc["img2.png", "timestamp"] == pd.Timestamp(want[0], tz="UTC")
        assert dict(tally.converted_from()) == {want[1]: 1}


def test_a_shard_number_beyond_int64_is_an_ignored_file_not_a_wrapped_part(tmp_path):
    src = i2d(tmp_path / "c", BAD)
    (tmp_path / "c/00001.parquet").rename(tmp_path / "c/99999999999999999999.parquet")
    (tmp_path / "c/00001.tar").unlink()
    outcome, _, ignored = sample(src, tmp_path / "out")
    assert sorted(outcome.values()) == ["kept", "kept"] and ignored == 1


def test_integer_file_names_in_prompts_jsonl_do_not_break_the_join(tmp_path):
    src = folder(tmp_path / "c", b'{"file_name": 7, "prompt": "a"}\n{"file_name": 8.5, "prompt": "b"}\n', "jsonl")
    outcome, _, ignored = sample(src, tmp_path / "out")
    assert sorted(outcome.values()) == ["kept", "kept"] and ignored == 2  # two prompt rows name no image


# ---------- class 4: every file through the one guard ----------

def fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def outside(path: Path, tmp_path: Path) -> None:
    target = tmp_path / f"elsewhere-{path.name}"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)


def link_to_fifo(path: Path, tmp_path: Path) -> None:
    fifo(path.with_name("pipe"))
    path.unlink()
    path.symlink_to(path.with_name("pipe"))


SPECIAL = {"fifo": lambda p, t: fifo(p), "link_outside": outside, "link_to_fifo": link_to_fifo}
GUARDED = {  # file: (builder, path of the file in the corpus, "part" if its rows are rejects, else "corpus")
    "ddb_metadata": (ddb, "metadata.parquet", "corpus"), "ddb_part_zip": (ddb, "images/part-000001.zip", "part"),
    "jdb_annotations": (lambda r: jdb(r, []), f"data/train/{journeydb.ANNOTATIONS['train']}", "corpus"),
    "jdb_part_tgz": (lambda r: jdb(r, []), "data/train/imgs/000.tgz", "part"),
    "i2d_table": (i2d, "00000.parquet", "corpus"), "i2d_tar": (i2d, "00000.tar", "part"),
    "i2d_parquet_shard": (lambda r: i2d(r, layout="parquet"), "00000.parquet", "corpus"),
    "folder_prompts_csv": (folder, "prompts.csv", "corpus"),
    "folder_prompts_jsonl": (lambda r: folder(r, suffix="jsonl"), "prompts.jsonl", "corpus"),
}


@pytest.mark.parametrize("special", sorted(SPECIAL))
@pytest.mark.parametrize("file", sorted(GUARDED))
def test_no_reader_opens_a_special_file_or_one_outside_the_corpus(file, special, tmp_path):
    build, rel, scope = GUARDED[file]
    src = build(tmp_path / "corpus")
    SPECIAL[special](tmp_path / "corpus" / rel, tmp_path)
    why = "leads outside the corpus" if special == "link_outside" else "is not a regular file"
    if scope == "corpus":
        return stops(src, tmp_path / "out", why)
    outcome, kept, _ = sample(src, tmp_path / "out")
    assert set(outcome.values()) == {"part_unreadable"} and kept.empty


def test_a_table_over_the_cap_is_refused_unread(tmp_path, monkeypatch):
    src = folder(tmp_path / "corpus")
    monkeypatch.setattr(local, "MAX_TABLE_BYTES", 64)
    stops(src, tmp_path / "out", r"prompts.csv: \d+ bytes > 64")


# ---------- class 5: bounded decompression ----------

def test_an_annotation_line_over_the_cap_is_a_reject_read_in_bounded_memory(tmp_path):
    """A 24 MiB line of incompressible text (so no bomb check stops it first) is one bad_annotation row, and
    reading it never holds it whole."""
    src = jdb(tmp_path / "c", [])
    good = b"".join(json.dumps({"img_path": f"000/good{i}.png", "prompt": GOOD}).encode() + b"\n" for i in range(2))
    rng = np.random.default_rng(0)
    chunks = [b'{"img_path": "000/x.png", "prompt": "'] + [
        np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)[rng.integers(0, 26, 1 << 20)].tobytes() for _ in range(24)]
    line = sum(map(len, chunks)) + 3
    annotations = tmp_path / "c/data/train" / journeydb.ANNOTATIONS["train"]
    _gzip_tar(annotations, "train.jsonl", [good, *chunks, b'"}\n'], len(good) + line)
    tracemalloc.start()
    try:
        open_corpus(src).metadata()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20  # the line is 24 MiB
    outcome, _, _ = sample(src, tmp_path / "out")
    assert outcome == {"000/good0.png": "kept", "000/good1.png": "kept", "line-3": "bad_annotation"}


@pytest.mark.parametrize("where", ["annotations", "part"])
def test_a_gzip_bomb_is_refused_before_it_is_inflated(where, tmp_path):
    """1 GiB of blank lines (or zeros after a part's members) in a ~1 MB gzip: refused once the output passes
    MAX_RATIO times the input, after a few MiB of work instead of the whole GiB."""
    src = jdb(tmp_path / "c", [])
    blank = b"\n" * (1 << 20)
    if where == "annotations":
        path = tmp_path / "c/data/train" / journeydb.ANNOTATIONS["train"]
        _gzip_tar(path, "train.jsonl", (blank for _ in range(1024)), 1 << 30)
        return stops(src, tmp_path / "out", "refused as a gzip bomb")
    _gzip_tar(tmp_path / "c/data/train/imgs/000.tgz", "000/good0.png", (b"\0" * (1 << 20) for _ in range(1024)), 1 << 30)
    outcome, _, _ = sample(src, tmp_path / "out")
    assert set(outcome.values()) == {"part_unreadable"}


def test_the_bomb_bound_leaves_room_for_real_annotations():
    """JourneyDB-like lines, each naming its own image, inflate far less than MAX_RATIO (images ~1x)."""
    line = json.dumps({"img_path": "000/x.jpg", "prompt": GOOD, "Task1": {"Style": ["oil", "watercolor"]}}).encode()
    text = b"\n".join(line.replace(b"x.jpg", f"{i}.jpg".encode()) for i in range(20000))
    assert len(text) / len(zlib.compress(text, 9)) < journeydb.MAX_RATIO


# ---------- class 7: the fingerprint covers every file read, through links too ----------

LAYOUTS = {"ddb": (ddb, "images"), "jdb": (lambda r: jdb(r, []), "data/train/imgs"),
           "i2d": (i2d, None), "folder": (folder, None)}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_identity_is_the_same_through_a_linked_root_and_follows_linked_part_folders(layout, tmp_path):
    """A part folder linked from elsewhere (read through the link, the guard refuses its parts: they lie outside)
    is fingerprinted through the link, so a change there is seen."""
    build, parts = LAYOUTS[layout]
    src = build(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    through = src.model_copy(update={"path": str(tmp_path / "link")})
    assert open_corpus(src).identity() == open_corpus(through).identity()
    if parts is None:
        return
    store = tmp_path / "store"
    (tmp_path / "real" / parts).rename(store)
    (tmp_path / "real" / parts).symlink_to(store)
    before = open_corpus(src).identity()
    part = next(p for p in store.iterdir() if p.suffix in (".zip", ".tgz"))
    part.write_bytes(part.read_bytes() + b"\0")  # a part read through the link changes
    assert open_corpus(src).identity() != before


def test_a_link_loop_inside_the_corpus_is_walked_once(tmp_path):
    src = ddb(tmp_path / "c")
    (tmp_path / "c/images/again").symlink_to(tmp_path / "c/images")
    assert "images/part-000001.zip" in local.walk(tmp_path / "c", follow_links=True)
    open_corpus(src).identity()  # terminates

