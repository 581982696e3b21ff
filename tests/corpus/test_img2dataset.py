"""The img2dataset reader on its three output formats, written here as img2dataset's writer.py writes them
(tars with Python's tarfile, as webdataset's TarWriter does: USTAR, members `{key}.{ext}` in sorted field
order, mode 0o444, owner bigdata), sampled end to end and on a corpus of bad inputs."""
from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylemap import shards
from stylemap.corpus import sampling
from stylemap.corpus.readers import img2dataset
from stylemap.corpus.readers import open_corpus
from stylemap.corpus.readers.base import CorpusError
from stylemap.params import Source
from tests.corpus.conftest import encode
from tests.support.fixtures import same_pixels

LAYOUT_EXT = {"webdataset": "jpg", "parquet": "webp", "files": "png"}  # one --encode_format per fixture
META = pa.schema([("url", pa.string()), ("caption", pa.string()), ("key", pa.string()), ("status", pa.string()),
                  ("error_message", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                  ("original_width", pa.int32()), ("original_height", pa.int32()), ("sha256", pa.string())])


def sample_row(key: str, caption: str | None, image: bytes | None, status: str = "success", error: str | None = None,
               size: tuple[int, int] | None = (128, 128)) -> dict:
    """One sample as img2dataset's downloader hands it to the writer: its meta, plus the encoded image."""
    width, height = size if status == "success" and size else (None, None)
    return {"url": f"https://example.com/{key}", "caption": caption, "key": key, "status": status,
            "error_message": error, "width": width, "height": height, "original_width": width,
            "original_height": height, "sha256": None, "image": image}


def write_shard(root: Path, shard: str, rows: list[dict], layout: str, ext: str, table: bool = True,
                data: bool = True) -> None:
    """Shard `shard` as writer.py writes it for `layout` (table: its NNNNN.parquet; data: its tar or folder)."""
    meta = [{k: v for k, v in r.items() if k != "image"} for r in rows]
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{shard}_stats.json").write_text(json.dumps({"count": len(rows), "successes": sum(
        r["status"] == "success" for r in rows)}, indent=4))
    if layout == "parquet":
        schema = META.append(pa.field(ext, pa.binary()))
        records = [{**m, ext: r["image"]} for m, r in zip(meta, rows)]
        if table:
            pq.write_table(pa.Table.from_pylist(records, schema), root / f"{shard}.parquet", row_group_size=100)
        return
    if table:
        pq.write_table(pa.Table.from_pylist(meta, META), root / f"{shard}.parquet", row_group_size=100)
    if not data:
        return
    written = [(m, r["image"]) for m, r in zip(meta, rows) if r["image"] is not None]
    if layout == "files":
        (root / shard).mkdir()
        for m, image in written:
            (root / shard / f"{m['key']}.{ext}").write_bytes(image)
            (root / shard / f"{m['key']}.txt").write_text(m["caption"] or "")
            (root / shard / f"{m['key']}.json").write_text(json.dumps(m, indent=4))
        return
    with tarfile.open(root / f"{shard}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, image in written:
            fields = {ext: image, "txt": (m["caption"] or "").encode(), "json": json.dumps(m, indent=4).encode()}
            for field in sorted(fields):
                add_member(tar, f"{m['key']}.{field}", fields[field])


def add_member(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname, info.type = len(data), time.time(), 0o444, \
        "bigdata", "bigdata", kind
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def run(root: Path, layout: str, s, tmp_path: Path):
    """sample_source on the corpus: (rows drawn, tally, files ignored, kept frame)."""
    src = Source(kind="local", path=str(root), format="img2dataset", layout=layout)
    drawn, tally, ignored, _, _ = sampling.sample_source("p", src, s, 0, tmp_path / "out", code="test")
    tally.report(drawn, "p")  # in = kept + rejected, or it raises
    return drawn, tally, ignored, shards.read_dir(tmp_path / "out")


@pytest.mark.parametrize("layout", ["webdataset", "parquet", "files"])
def test_every_good_image_is_kept(layout, horde_images, sample_params, tmp_path):
    ext = LAYOUT_EXT[layout]
    samples = [(prompt, encode(image, ext), image.size) for _, image, prompt in horde_images]
    samples.insert(5, ("a castle", None, None))  # a URL that failed
    rows = []
    for i, (caption, image, size) in enumerate(samples):
        key = f"{i // 30:05d}{i % 30:02d}"  # --number_sample_per_shard 30: the shard's 5 digits, then 2
        rows.append(sample_row(key, caption, image, size=size) if image else
                    sample_row(key, caption, None, "failed_to_download", "HTTP Error 404: Not Found"))
    for shard in range(2):
        write_shard(tmp_path / "corpus", f"{shard:05d}", rows[shard * 30:(shard + 1) * 30], layout, ext)
    drawn, tally, ignored, kept = run(tmp_path / "corpus", layout, sample_params, tmp_path)
    assert (drawn, tally.kept, dict(tally.counts), ignored) == (len(horde_images) + 1, len(horde_images),
                                                                 {"download_failed": 1}, 0)
    assert tally.rows[0]["detail"] == "HTTP Error 404: Not Found"
    by_key = {r["key"]: r for r in rows}
    assert all(same_pixels(b, by_key[k]["image"]) for k, b in zip(kept["image_name"], kept["image_bytes"]))
    assert all(by_key[k]["caption"] == p for k, p in zip(kept["image_name"], kept["prompt"]))
    assert sorted(kept["part_id"].unique()) == [0, 1]


def _bad_corpus(root: Path, layout: str, good: list[bytes], prompt: str, tmp_path: Path) -> None:
    """Shard 00000 of every fault a row can have; shards 00001-00003 of every fault a shard can have. Every row
    has a prompt sample keeps, so each is rejected for its fault alone."""
    ext = LAYOUT_EXT[layout]
    huge = good[0] + b"\0" * 200_000  # decodable, but past max_member_bytes below
    rows = [sample_row("0000000", prompt, good[0]), sample_row("0000001", prompt, good[1]),
            sample_row("0000002", prompt, b"\xff\xd8\xff\xe0" + b"not a jpeg" * 40),
            sample_row("0000003", prompt, None, "failed_to_download", "HTTP Error 404: Not Found"),
            sample_row("0000004", prompt, None, "failed_to_resize", "image too small"),
            sample_row("../evil", prompt, good[0]),
            sample_row("0000006", prompt, None),  # success in the table, no image written
            sample_row("0000007", prompt, huge)]
    write_shard(root, "00000", rows, layout, ext)
    (root / "notes.txt").write_text("not part of the layout")
    if layout == "parquet":  # the table is the shard: a lost image is a null cell
        return
    write_shard(root, "00001", [sample_row("0000100", prompt, good[0])], layout, ext, table=False)
    write_shard(root, "00002", [sample_row("0000200", prompt, good[0])], layout, ext, data=False)
    if layout == "webdataset":
        with tarfile.open(root / "00000.tar", "a", format=tarfile.USTAR_FORMAT) as tar:
            add_member(tar, "0000099.jpg", good[0])  # named by no row
            add_member(tar, "0000099.txt", b"stray")
            add_member(tar, "0000008.jpg", b"", tarfile.SYMTYPE)  # a link member named for a row
        write_shard(root, "00000", rows + [sample_row("0000008", prompt, None)], layout, ext, data=False)
        write_shard(root, "00003", [sample_row("0000300", prompt, good[0])], layout, ext, data=False)
        (root / "00003.tar").write_bytes(b"this is not a tar archive" * 40)
        return
    shard = root / "00000"
    (shard / "0000099.jpg").write_bytes(good[0])  # named by no row
    (tmp_path / "secret.png").write_bytes(good[0])
    (shard / "0000008.png").symlink_to(tmp_path / "secret.png")  # out of the corpus
    os.mkfifo(shard / "0000009.png")  # would block a plain open()
    (shard / "0000010.png").mkdir()
    write_shard(root, "00000", rows + [sample_row(k, prompt, None) for k in ("0000008", "0000009", "0000010")],
                layout, ext, data=False)


BAD = {  # layout -> (rejects by reason, ignored files)
    "webdataset": ({"undecodable": 1, "download_failed": 1, "resize_failed": 1, "bad_image_path": 1, "image_missing": 1,
                    "member_too_large": 1, "not_a_file": 1, "part_unreadable": 2},
                   5),  # 2 stray members, 00001.tar and 00001_stats.json (no table), notes.txt
    "files": ({"undecodable": 1, "download_failed": 1, "resize_failed": 1, "bad_image_path": 2, "image_missing": 1,
               "member_too_large": 1, "not_a_file": 2, "part_unreadable": 1},
              9),  # 00000/0000099.jpg; evil.png|txt|json (key ../evil, out of 00000/); 00001/'s 3 files and its
                 # _stats.json (no table); notes.txt
    "parquet": ({"undecodable": 1, "download_failed": 1, "resize_failed": 1, "bad_image_path": 1, "image_missing": 1,
                 "member_too_large": 1}, 1),  # notes.txt
}


@pytest.mark.parametrize("layout", ["webdataset", "parquet", "files"])
def test_bad_inputs_are_counted_rejects(layout, horde_images, sample_params, tmp_path):
    ext = LAYOUT_EXT[layout]
    _bad_corpus(tmp_path / "bad", layout, [encode(image, ext) for _, image, _ in horde_images[:2]], horde_images[0][2],
                tmp_path)
    s = sample_params.model_copy(update={"max_member_bytes": 100_000})
    drawn, tally, ignored, kept = run(tmp_path / "bad", layout, s, tmp_path)
    rejects, files = BAD[layout]
    assert (tally.kept, dict(tally.counts), ignored) == (2, rejects, files)
    assert sorted(kept["image_name"]) == ["0000000", "0000001"]
    detail = {r["image_name"]: (r["reason"], r["detail"]) for r in tally.rows}
    assert detail["0000003"] == ("download_failed", "HTTP Error 404: Not Found")
    assert detail["0000004"] == ("resize_failed", "image too small")
    assert detail["../evil"] == ("bad_image_path", "'../evil'")  # decided from the table: never read
    assert detail["0000006"][0] == "image_missing"
    if layout != "parquet":
        assert detail["0000200"][0] == "part_unreadable" and "not found" in detail["0000200"][1]
    if layout == "webdataset":
        assert "not a readable tar" in detail["0000300"][1]
    if layout == "files":
        assert detail["0000008"] == ("bad_image_path", "00000/0000008.png leads outside the corpus folder")
        assert detail["0000009"][0] == detail["0000010"][0] == "not_a_file"


def test_a_damaged_table_is_a_corpus_error(tmp_path):
    write_shard(tmp_path, "00000", [sample_row("0000000", "a cat", b"x")], "webdataset", "jpg")
    (tmp_path / "00001.parquet").write_bytes(b"PAR1 cut short by an interrupted download")
    with pytest.raises(CorpusError, match="00001.parquet: not a readable parquet file"):
        open_corpus(Source(kind="local", path=str(tmp_path), format="img2dataset")).metadata()
    (tmp_path / "00001.parquet").unlink()
    pq.write_table(pa.table({"url": ["u"]}), tmp_path / "00001.parquet")
    with pytest.raises(CorpusError, match=r"missing img2dataset columns \['key', 'status'\]"):
        open_corpus(Source(kind="local", path=str(tmp_path), format="img2dataset")).metadata()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "00000.tar").write_bytes(b"")
    with pytest.raises(CorpusError, match="no img2dataset shard tables"):
        open_corpus(Source(kind="local", path=str(tmp_path / "other"), format="img2dataset")).metadata()


def test_metadata_of_the_parquet_format_reads_no_image_bytes(tmp_path, monkeypatch):
    write_shard(tmp_path, "00000", [sample_row("0000000", "a cat", b"jpeg bytes")], "parquet", "jpg")
    read = []
    real = img2dataset.pq.read_table
    monkeypatch.setattr(img2dataset.pq, "read_table", lambda path, columns: read.append(columns) or real(path, columns=columns))
    corpus = open_corpus(Source(kind="local", path=str(tmp_path), format="img2dataset", layout="parquet"))
    meta = corpus.metadata()
    assert "jpg" not in read[0] and meta[["image_name", "prompt", "part_id", "reject"]].values.tolist() == [
        ["0000000", "a cat", 0, ""]]
    with corpus.open_part(0, 100) as part:
        assert part.read("0000000", 100) == b"jpeg bytes" and part.fields("0000000") == {}


def test_generation_fields_saved_under_stylemap_names_are_used(tmp_path):
    """--save_additional_columns '["cfg", "timestamp"]' (renamed so before download) feeds sample's filters and trends."""
    table = pa.Table.from_pylist([{**{k: v for k, v in sample_row("0000000", "a cat", None).items() if k != "image"},
                                   "cfg": 7.5, "timestamp": "2024-01-26T22:12:04.000Z"}])
    pq.write_table(table, tmp_path / "00000.parquet")
    meta = open_corpus(Source(kind="local", path=str(tmp_path), format="img2dataset")).metadata()
    assert meta.loc[0, ["cfg", "timestamp"]].tolist() == [7.5, "2024-01-26T22:12:04.000Z"]


def test_identity_follows_the_files(tmp_path):
    write_shard(tmp_path, "00000", [sample_row("0000000", "a cat", b"x")], "webdataset", "jpg")
    src = Source(kind="local", path=str(tmp_path), format="img2dataset")
    before = open_corpus(src).identity()
    assert open_corpus(src).identity() == before
    (tmp_path / "00000.tar").write_bytes(b"changed")
    assert open_corpus(src).identity() != before
