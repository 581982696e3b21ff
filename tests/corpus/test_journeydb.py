"""The journeydb reader on JourneyDB trees packed from the shared Horde images: rows and parts as packed, sample end
to end with counts that reconcile, a corpus of bad inputs with exact reject reasons, and nothing written to disk."""
from __future__ import annotations

import gzip
import io
import os
import random
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from stylemap import shards
from stylemap.corpus import demo
from stylemap.corpus.filters import prompt_reject
from stylemap.corpus.readers import journeydb
from stylemap.corpus.readers import open_corpus
from stylemap.corpus.readers.base import ROW_COLUMNS, CorpusError
from stylemap.corpus.sampling import sample_source
from stylemap.params import Source
from tests.support.fixtures import horde_rows, same_pixels, write_journeydb

GOOD = demo.PROMPTS["watercolor"].format("a tabby cat")
CAP = 1 << 24


def jpeg(data: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def source(root: Path, **kw) -> Source:
    return Source(kind="local", path=str(root), format="journeydb", **kw)


def files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def packed(horde, tmp_path_factory) -> tuple[Path, list[tuple]]:
    """60 Horde images over three parts, every other one re-encoded as JPEG; img_path with and without './', and
    part 2's members stored as './002/...' (tar of '.'). Returns (root, [(name, part, prompt, styles, bytes)])."""
    root = tmp_path_factory.mktemp("jdb")
    lines, parts, expected = [], {}, []
    for i, row in enumerate(horde_rows(60)):
        part, stem = i % 3, Path(row["image_name"]).stem
        data, name = (jpeg(row["data"]), f"{part:03d}/{stem}.jpg") if i % 2 else (row["data"], f"{part:03d}/{stem}.webp")
        styles = [row["style"], "digital art"]
        lines.append({"img_path": f"./{name}" if i % 4 < 2 else name, "prompt": row["prompt"],
                      "Task1": {"Style": styles, "Content": ["a subject"], "Atmosphere": [], "Others": []},
                      "Task2": {"Caption": "a generated image"}})
        parts.setdefault(part, {})[f"./{name}" if part == 2 else name] = data
        expected.append((name, part, row["prompt"], styles, data))
    return write_journeydb(root, lines, parts), expected


def test_rows_and_parts_are_what_was_packed(packed):
    root, expected = packed
    corpus = open_corpus(source(root))
    meta = corpus.metadata()
    assert list(meta.columns) == ROW_COLUMNS and (meta["reject"] == "").all()
    assert meta[["image_name", "part_id", "prompt"]].values.tolist() == [[n, p, pr] for n, p, pr, _, _ in expected]
    assert meta["annotated_styles"].tolist() == [s for *_, s, _ in expected]
    for part_id in (0, 1, 2):
        with corpus.open_part(part_id, CAP) as part:
            for name, _, _, _, data in reversed([e for e in expected if e[1] == part_id]):  # against tar order
                assert part.fields(name) == {} and part.read(name, CAP) == data
    assert corpus.unexpected_files([0, 1, 2]) == 0


def test_sample_keeps_every_good_image_and_counts_reconcile(packed, make_params, tmp_path):
    root, expected = packed
    p = make_params({"sample.n": 1000})
    drawn, tally, ignored, excluded, _ = sample_source("jdb", source(root, min_words=0), p.sample, p.seed, tmp_path, "test")
    relaxed = p.sample.model_copy(update={"min_words": 0})
    good = {name for name, _, prompt, _, _ in expected if prompt_reject(prompt, None, relaxed) is None}
    kept = shards.read_dir(tmp_path).set_index("image_name")
    assert drawn == len(expected) == tally.kept + tally.rejected and (ignored, excluded) == (0, 0)
    assert set(kept.index) == good and tally.kept == len(good) > 40
    assert set(tally.counts) <= {"language", "incoherent", "empty_prompt"}  # the prompt filters alone
    for name, _, _, styles, data in expected:
        if name in good:
            assert same_pixels(kept.loc[name, "image_bytes"], data) and list(kept.loc[name, "annotated_styles"]) == styles
    assert kept["image_id"].str.startswith("jdb/").all() and (kept["width"] > 0).all()


# ---------- a corpus of bad inputs ----------

def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def write_bad_corpus(root: Path) -> tuple[dict[str, str | None], int]:
    """A split with one fault per row: {image name: expected reject reason or None if kept}, and the cap to use."""
    a, b, c = (r["data"] for r in horde_rows(3))
    cap = max(len(a), len(jpeg(b)), len(c)) + 1024
    folder = tarfile.TarInfo("000")
    folder.type = tarfile.DIRTYPE
    parts = {
        0: {"000": folder, "000/good-a.webp": a, "./000/good-b.jpg": jpeg(b), "000/garbled.jpg": jpeg(c)[:2000],
            "000/link.jpg": link("000/link.jpg", "good-a.webp", tarfile.SYMTYPE),
            "000/hard.jpg": link("000/hard.jpg", "000/good-a.webp", tarfile.LNKTYPE),
            "000/big.webp": c + b"\0" * cap, "000/stray.jpg": a},
        1: {"001/cut.webp": a}, 3: {"003/flipped.webp": c + a},
    }
    rows = {"000/good-a.webp": None, "000/good-b.jpg": None, "000/garbled.jpg": "undecodable",
            "000/link.jpg": "not_a_file", "000/hard.jpg": "not_a_file", "000/big.webp": "member_too_large",
            "000/ghost.jpg": "image_missing", "001/cut.webp": "part_unreadable", "002/absent.webp": "part_unreadable",
            "003/flipped.webp": "part_unreadable"}
    lines: list = [{"img_path": f"./{name}", "prompt": GOOD, "Task1": {"Style": ["watercolor"]}} for name in rows]
    bad = [({"img_path": "../../etc/passwd.jpg", "prompt": GOOD}, "bad_image_path"),
           ({"img_path": "/abs/000/x.jpg", "prompt": GOOD}, "bad_image_path"),
           ({"img_path": "000/sub/x.jpg", "prompt": GOOD}, "bad_image_path"),
           ('{"img_path": "000/x.jpg", "prompt": ', "bad_annotation"), ("[1, 2]", "bad_annotation"),
           ({"prompt": GOOD}, "bad_annotation")]
    for line, reason in bad:
        lines.append(line)
        rows[f"line-{len(lines)}"] = reason
    lines.append("   ")  # a blank line is no annotation: not a row
    write_journeydb(root, lines, parts)
    imgs = root / "data/train/imgs"
    cut = (imgs / "001.tgz").read_bytes()
    (imgs / "001.tgz").write_bytes(cut[: len(cut) // 2])
    flipped = bytearray((imgs / "003.tgz").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (imgs / "003.tgz").write_bytes(bytes(flipped))
    (root / "data/train/notes.txt").write_text("a stray file beside the layout")
    return rows, cap


def test_bad_inputs_are_counted_rejects_with_exact_reasons(horde, make_params, tmp_path):
    expected, cap = write_bad_corpus(tmp_path / "bad")
    p = make_params({"sample.n": 1000, "sample.max_member_bytes": cap})
    drawn, tally, ignored, _, _ = sample_source("bad", source(tmp_path / "bad"), p.sample, p.seed, tmp_path / "out", "test")
    by_name = {r["image_name"]: r["reason"] for r in tally.rows}
    assert by_name == {name: reason for name, reason in expected.items() if reason}
    assert tally.counts == Counter({"bad_image_path": 3, "bad_annotation": 3, "part_unreadable": 3, "not_a_file": 2,
                                    "undecodable": 1, "member_too_large": 1, "image_missing": 1})
    assert drawn == len(expected) == 16 == tally.kept + tally.rejected and tally.kept == 2
    assert set(shards.read_dir(tmp_path / "out")["image_name"]) == {"000/good-a.webp", "000/good-b.jpg"}
    assert ignored == 2  # 000/stray.jpg (no annotation) and notes.txt (outside the layout); the "000" folder entry is not
    details = {r["image_name"]: r["detail"] for r in tally.rows}
    assert "not found" in details["002/absent.webp"] and "002.tgz" in details["002/absent.webp"]
    assert "symlink" in details["000/link.jpg"] and "leaves imgs/" in details["line-11"]
    assert "is not NNN/<file>" in details["line-13"] and "JSONDecodeError" in details["line-14"]


def test_a_missing_or_damaged_annotation_file_is_an_error_naming_it(horde, tmp_path):
    expected, _ = write_bad_corpus(tmp_path)
    annotations = tmp_path / "data/train" / journeydb.ANNOTATIONS["train"]
    annotations.write_bytes(annotations.read_bytes()[:40])
    with pytest.raises(CorpusError, match="train_anno_realease_repath.jsonl.tgz: not a readable tgz"):
        open_corpus(source(tmp_path)).metadata()
    annotations.unlink()
    with pytest.raises(CorpusError, match="train_anno_realease_repath.jsonl.tgz not found"):
        open_corpus(source(tmp_path)).metadata()
    with pytest.raises(CorpusError, match="valid_anno_repath.jsonl.tgz"):  # the valid split reads its own file
        open_corpus(source(tmp_path, layout="valid")).metadata()


def test_reading_writes_nothing_to_disk(packed, tmp_path, monkeypatch):
    root, expected = packed
    before = files(root)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for method in ("extract", "extractall"):
        monkeypatch.setattr(tarfile.TarFile, method, lambda *a, **k: pytest.fail("a member was extracted"))
    corpus = open_corpus(source(root))
    corpus.metadata()
    for part_id in (0, 1, 2):
        with corpus.open_part(part_id, CAP) as part:
            assert [part.read(n, CAP) for n, p, *_ in expected if p == part_id]
    assert files(root) == before and not any((tmp_path / "tmp").iterdir())


def test_identity_changes_with_any_file_of_the_split(tmp_path):
    write_journeydb(tmp_path, [{"img_path": "000/a.jpg", "prompt": GOOD}], {0: {"000/a.jpg": b"x"}})
    first = open_corpus(source(tmp_path)).identity()
    assert open_corpus(source(tmp_path)).identity() == first
    os.utime(tmp_path / "data/train/imgs/000.tgz", ns=(1, 1))
    assert open_corpus(source(tmp_path)).identity() != first


def test_seekable_gzip_reads_any_range_and_seeks_back_from_the_nearest_state(tmp_path, monkeypatch):
    monkeypatch.setattr(journeydb, "SPACING", 1 << 16)
    monkeypatch.setattr(journeydb, "CHUNK", 1 << 12)
    rng = random.Random(0)
    raw = rng.randbytes(300_000) + b"abc" * 100_000 + rng.randbytes(200_000)
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw[:400_000]) + gzip.compress(raw[400_000:]))  # two gzip members
    gz = journeydb.SeekableGzip((tmp_path / "x.gz").open("rb"))
    inflated = []
    more = gz._more
    monkeypatch.setattr(gz, "_more", lambda: inflated.append(len(out := more())) or out)
    assert gz.read() == raw and len(gz._points) > 8
    for _ in range(300):
        start, size = rng.randrange(len(raw)), rng.randrange(50_000)
        inflated.clear()
        assert gz.seek(start) == start and gz.read(size) == raw[start:start + size]
        assert sum(inflated) <= journeydb.SPACING + size + 2 * journeydb.CHUNK  # from the nearest state, not the top
    gz.seek(len(raw) + 10)
    assert gz.read(5) == b""
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:100_000])
    with pytest.raises(EOFError):
        journeydb.SeekableGzip((tmp_path / "cut.gz").open("rb")).read()
