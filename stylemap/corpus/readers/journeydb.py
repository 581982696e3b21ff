"""JourneyDB's published layout (Midjourney images), read in place from its tgz files, never unpacked.

`data/<split>/imgs/NNN.tgz`, each a gzipped tar of `NNN/<name>.jpg`, and one annotation file per split
(`data/train/train_anno_realease_repath.jsonl.tgz`, sic, and `data/valid/valid_anno_repath.jsonl.tgz`): a tgz
holding a jsonl, one image per line: {"img_path": "./NNN/<name>.jpg", "prompt": ..., "Task1": {"Style": [...],
"Content": [...], "Atmosphere": [...], "Others": [...]}, "Task2": {"Caption": ...}, "Task3": {...}}.

A gzip stream can only be decompressed from its start, and tarfile seeks to every member it reads, so gzip's own
seek back (decompress again from the top) would make k reads cost k passes over a multi-GB part. `SeekableGzip`
keeps zlib's state every `SPACING` bytes during the one pass that lists the members; a read then decompresses at
most `SPACING` bytes before its member. Memory: the member list and one zlib state (35 KB) per `SPACING` (4 MiB) of tar.
"""
from __future__ import annotations

import bisect
import json
import re
import tarfile
import zlib
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import pandas as pd

import stylemap.corpus.readers.local as local
from stylemap.corpus.readers.base import CorpusError, MemberError, safe_member_name, with_row_columns
from stylemap.params import Source

ANNOTATIONS = {"train": "train_anno_realease_repath.jsonl.tgz", "valid": "valid_anno_repath.jsonl.tgz"}
IMG_PATH = re.compile(r"(?:\./)?(\d{3})/([^/]+)")  # img_path, relative to imgs/: [./]NNN/<file>, NNN = its tgz
SPACING = 4 << 20  # output bytes between kept zlib states (35 KB each): the most a read inflates before its member
CHUNK = 256 << 10  # bytes per file read and per inflate step: a read overshoots its member by at most this
GZIP = 31  # zlib wbits for a gzip header and trailer (the trailer's CRC is checked at the end of the stream)
MAX_RATIO = 100  # output bytes per input byte past SPACING: JPEG tars inflate ~1x, JSON lines ~10x, zeros ~1000x
MAX_LINE = 1 << 20  # bytes in an annotation line (a real one is ~2 KB); a longer one is a bad_annotation row
ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


class Inflation(OSError):
    """A gzip stream inflates past MAX_RATIO: a bomb, refused before the work it costs (1 GiB of blank lines
    would take minutes of CPU)."""


class Corpus:
    """One split of a local JourneyDB download (the base.Reader interface; `src.layout` is the split).

    Members of a tgz that no annotation names are counted when `open_part` lists that tgz, so
    `unexpected_files` covers the parts this run opened: listing every tgz again would decompress the corpus."""

    def __init__(self, src: Source):
        self.src = src
        self.split = Path(src.path) / "data" / src.layout
        self.annotations = self.split / ANNOTATIONS[src.layout]
        self._annotated: dict[int, set[str]] | None = None  # part_id -> image names its annotations give
        self._strays: dict[int, int] = {}  # part_id -> members of that tgz no annotation names

    def part_path(self, part_id: int) -> Path:
        return self.split / "imgs" / f"{part_id:03d}.tgz"

    @cached_property
    def _files(self) -> list[str]:
        """Every file under the split, through links to folders (`imgs/` may be one)."""
        return local.walk(self.split, follow_links=True) if self.split.is_dir() else []

    def identity(self) -> str:
        """Every file's path, size and mtime under the split: a changed corpus must not resume from old shards."""
        return local.identity(self.split, self._files)

    def unexpected_files(self, part_ids) -> int:
        """Files in the split folder outside the layout, plus unannotated members of the tgz files opened so far."""
        expected = {ANNOTATIONS[self.src.layout], *(f"imgs/{int(i):03d}.tgz" for i in part_ids)}
        return sum(rel not in expected for rel in self._files) + sum(self._strays.values())

    def metadata(self) -> pd.DataFrame:
        """One row per annotation line, streamed from inside its tgz. A line that is not a JSON object with an
        `img_path` string is a `bad_annotation` row, and an img_path outside `NNN/<file>` a `bad_image_path` row
        (both named `line-<n>`): counted rejects when drawn, never a crash. They carry the lowest part on disk,
        so that drawing them opens no part that is not there."""
        present = [int(p.stem) for p in self.split.glob("imgs/*.tgz") if re.fullmatch(r"\d{3}", p.stem)]
        nowhere = min(present, default=0)
        rows = [_row(n, line, nowhere) for n, line in self._lines()]
        frame = pd.DataFrame(rows, columns=["image_name", "part_id", "prompt", "annotated_styles", "reject",
                                            "reject_detail"], dtype=object)  # text as written: base.with_row_columns
        frame = with_row_columns(frame.astype({"part_id": "int64"}))
        ok = frame[frame["reject"] == ""]
        self._annotated = {int(pid): set(names) for pid, names in ok.groupby("part_id")["image_name"]}
        return frame

    def _lines(self):
        """(line number, bytes) of every non-blank line of the annotation jsonl, read from its tgz as a stream
        (bytes None for a line over MAX_LINE: skipped a chunk at a time, never held whole)."""
        found, n = False, 0
        gz = SeekableGzip(local.open_file(self.split, ANNOTATIONS[self.src.layout], local.MAX_TABLE_BYTES))
        try:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".jsonl"):
                        found = True
                        for line in _capped_lines(tar.extractfile(member)):
                            n += 1
                            if line is None or (line := line.strip()):
                                yield n, line
        except ARCHIVE_ERRORS as err:
            raise CorpusError(f"{self.annotations}: not a readable tgz: {type(err).__name__}: {err}") from None
        finally:
            gz.close()
        if not found:
            raise CorpusError(f"{self.annotations}: holds no .jsonl file")

    def open_part(self, part_id: int, max_bytes: int) -> TgzPart:
        """List imgs/NNN.tgz's members in one pass (CorpusError if it is missing or damaged anywhere, its gzip
        CRC included) and count those no annotation names. Tar headers are the only index: `max_bytes` caps reads."""
        path = self.part_path(part_id)
        if self._annotated is None:
            self.metadata()
        gz = SeekableGzip(local.open_file(self.split, path.relative_to(self.split)))
        try:
            tar = tarfile.TarFile(fileobj=gz)
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            _check_end(gz, tar.offset)
        except (*ARCHIVE_ERRORS, CorpusError) as err:
            gz.close()
            raise CorpusError(f"{path}: {type(err).__name__}: {err}") from None
        annotated = self._annotated.get(part_id, set())
        self._strays[part_id] = sum(not m.isdir() and name not in annotated for name, m in members.items())
        return TgzPart(path, tar, members)


def _capped_lines(stream):
    """The lines of a binary stream, a line over MAX_LINE bytes as None (its rest read and dropped in chunks)."""
    while line := stream.readline(MAX_LINE + 1):
        if len(line) <= MAX_LINE:
            yield line
            continue
        while not line.endswith(b"\n") and (line := stream.readline(CHUNK)):
            pass
        yield None


def _row(n: int, line: bytes | None, nowhere: int) -> tuple:
    """(image_name, part_id, prompt, annotated_styles, reject, reject_detail) of annotation line n."""
    if line is None:
        return f"line-{n}", nowhere, None, None, "bad_annotation", f"line {n}: longer than {MAX_LINE} bytes"
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"line-{n}", nowhere, None, None, "bad_annotation", f"line {n}: {type(err).__name__}: {err}"
    path = entry.get("img_path") if isinstance(entry, dict) else None
    if not isinstance(path, str):
        return f"line-{n}", nowhere, None, None, "bad_annotation", f"line {n}: not an object with an img_path string"
    match = IMG_PATH.fullmatch(path)
    if not safe_member_name(path) or not match:
        why = "leaves imgs/" if not safe_member_name(path) else "is not NNN/<file>"
        return f"line-{n}", nowhere, None, None, "bad_image_path", f"line {n}: img_path {path!r} {why}"
    task1 = entry.get("Task1")
    styles = task1.get("Style") if isinstance(task1, dict) else None
    return (f"{match[1]}/{match[2]}", int(match[1]), entry.get("prompt"), styles if isinstance(styles, list) else None,
            "", "")


def _check_end(gz: SeekableGzip, offset: int) -> None:
    """tarfile ends its listing quietly at a damaged header after the first: what follows the last member must be
    zeros to the end of the stream (reading there also checks the gzip CRC)."""
    gz.seek(offset)
    while block := gz.read(CHUNK):
        if block.count(0) != len(block):
            raise CorpusError(f"unreadable tar data at byte {gz.tell() - len(block)} after the last member")


class TgzPart:
    """An opened imgs/NNN.tgz: members by name (`./` stripped); JourneyDB parts store no generation fields."""

    def __init__(self, path: Path, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]):
        self.path, self.tar, self.members = path, tar, members

    def fields(self, image_name: str) -> dict:
        return {}

    def read(self, image_name: str, max_bytes: int) -> bytes:
        """A regular member's bytes; never follows a link (a link or device member is `not_a_file`)."""
        info = self.members.get(image_name)
        if info is None:
            raise MemberError("image_missing", f"{image_name} not in {self.path.name}")
        if not info.isfile():
            kind = "a symlink" if info.issym() else "a hard link" if info.islnk() else f"tar type {info.type!r}"
            raise MemberError("not_a_file", f"{image_name} is {kind} in {self.path.name}")
        if info.size > max_bytes:
            raise MemberError("member_too_large", f"{info.size} bytes > sample.max_member_bytes {max_bytes}")
        try:
            return self.tar.extractfile(info).read()
        except ARCHIVE_ERRORS as err:
            raise MemberError("member_unreadable", f"{type(err).__name__}: {err}") from None

    def __enter__(self) -> TgzPart:
        return self

    def __exit__(self, *exc) -> None:
        self.tar.fileobj.close()


class SeekableGzip:
    """A gzip file's decompressed bytes (read, seek, tell for tarfile), with a zlib state kept every SPACING bytes
    of output on the way, so a seek back resumes from the nearest one instead of from the top."""

    def __init__(self, file: BinaryIO):
        self._file = file  # closed by close(), with the part
        self._points = [(0, 0, zlib.decompressobj(GZIP))]  # (output offset, input offset, zlib state), ascending
        self._resume(*self._points[0])

    def _resume(self, out: int, in_: int, state) -> None:
        self._file.seek(in_)
        self._in, self._pending, self._z = in_, b"", state.copy()  # input: offset of the first byte not yet inflated
        self._made = self._base = out  # output made so far; offset of self._buf[0]
        self._buf, self._at = b"", 0  # output not yet read starts at self._buf[self._at]

    def _more(self) -> bytes:
        """The next piece of output, b"" at the end of the stream (EOFError if the file ends inside it)."""
        while True:
            if not self._pending:
                self._pending = self._file.read(CHUNK)
                if not self._pending:
                    if self._z.eof:
                        return b""
                    raise EOFError("the gzip stream is cut short")
            if self._z.eof:  # gzip members may be concatenated: the next one starts here
                self._z = zlib.decompressobj(GZIP)
            size = len(self._pending)
            out = self._z.decompress(self._pending, CHUNK)
            self._pending = self._z.unconsumed_tail or self._z.unused_data
            self._in += size - len(self._pending)
            if out:
                self._made += len(out)
                if self._made > SPACING and self._made > MAX_RATIO * self._in:
                    raise Inflation(f"inflates to over {MAX_RATIO}x its size: refused as a gzip bomb")
                if self._made >= self._points[-1][0] + SPACING and not self._z.eof:
                    self._points.append((self._made, self._in, self._z.copy()))
                return out

    def tell(self) -> int:
        return self._base + self._at

    def seek(self, target: int) -> int:
        """Move to output offset `target` (tarfile only seeks to absolute offsets)."""
        if target < 0:
            raise OSError(f"negative seek position {target}")
        point = self._points[bisect.bisect_right(self._points, target, key=lambda p: p[0]) - 1]
        if target < self._base or point[0] > self._base + len(self._buf):  # behind, or a kept state is nearer
            self._resume(*point)
        while target > self._base + len(self._buf):  # inflate up to the target, keeping nothing
            self._base, self._buf, self._at = self._base + len(self._buf), self._more(), 0
            if not self._buf:
                return self.tell()  # past the end: the next read returns b""
        self._at = target - self._base
        return target

    def read(self, size: int = -1) -> bytes:
        pieces = []
        while size != 0:
            if self._at == len(self._buf):
                self._base, self._buf, self._at = self._base + len(self._buf), self._more(), 0
                if not self._buf:
                    break
            take = len(self._buf) - self._at if size < 0 else min(size, len(self._buf) - self._at)
            pieces.append(self._buf[self._at:self._at + take])
            self._at += take
            size -= take if size > 0 else 0
        return b"".join(pieces)

    def close(self) -> None:
        self._file.close()
