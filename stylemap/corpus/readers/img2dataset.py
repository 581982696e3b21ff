"""img2dataset's output folder, in each of its output formats (src.layout), as its writer.py lays it out.

Every format keeps one table per shard, `NNNNN.parquet`, with a row for every URL tried, failed ones
included: the URL list's columns (`url`; `caption` when --caption_col was given, renamed so; any
--save_additional_columns), then `key` (9 digits: shard id, then index in the shard), `status` (success,
failed_to_download, failed_to_resize), `error_message`, `width`, `height`, `original_width`,
`original_height`; beside it `NNNNN_stats.json`. The images, `{key}.{ext}` with ext the --encode_format
(jpg, png or webp), are written for successful rows only:
- webdataset: in `NNNNN.tar`, with `{key}.txt` (the caption) and `{key}.json` (the row) beside each;
- files: in the folder `NNNNN/`, with the same `.txt` and `.json`;
- parquet: in the shard table itself, as a binary column named after ext.

A shard is its table: the table is read as the corpus's metadata, so an unreadable one is a CorpusError,
and a tar or folder with no table holds no row to draw (counted by `unexpected_files`, like a DiffusionDB
zip no metadata row names). A table whose tar or folder is missing makes its drawn rows part_unreadable.
"""
from __future__ import annotations

import bisect
import os
import re
import tarfile
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow.parquet as pq

import stylemap.corpus.readers.local as local
from stylemap.corpus.readers.base import CorpusError, MemberError, safe_member_name, with_row_columns
from stylemap.params import Source

IMAGE_EXTS = ("jpg", "png", "webp")  # --encode_format: the image's member suffix, or its column in the parquet format
MEMBER_EXTS = {*IMAGE_EXTS, "txt", "json"}
STATUS_REJECTS = {"failed_to_download": "download_failed", "failed_to_resize": "resize_failed"}
SHARD = re.compile(r"(\d+)\.parquet")
INT64_MAX = 2**63 - 1  # part ids are int64


class Corpus:
    """An img2dataset output folder (the base.Reader interface)."""

    def __init__(self, src: Source):
        self.layout = src.layout
        self.root = Path(src.path)
        self.generator_column = src.generator_column
        self._key_sets: dict[int, set[str]] = {}

    @cached_property
    def _files(self) -> list[str]:
        return local.walk(self.root)

    @cached_property
    def _shards(self) -> dict[int, str]:
        """Shard number -> its name (the table's stem; its zero padding follows --oom_shard_count)."""
        shards: dict[int, str] = {}
        for rel in self._files:
            if (m := SHARD.fullmatch(rel)) and int(m[1]) <= INT64_MAX:  # a larger number is no shard: unexpected
                if int(m[1]) in shards:
                    raise CorpusError(f"{self.root}: {shards[int(m[1])]}.parquet and {rel} are both shard {int(m[1])}")
                shards[int(m[1])] = m[1]
        return shards

    def identity(self) -> str:
        return local.identity(self.root, self._files)

    def metadata(self) -> pd.DataFrame:
        """One row per shard table row, read without the image column (the parquet format's only heavy one)."""
        if not self._shards:
            raise CorpusError(f"{self.root}: no img2dataset shard tables (NNNNN.parquet) found")
        return with_row_columns(pd.concat([self._rows(part_id) for part_id in sorted(self._shards)],
                                          ignore_index=True))

    def _table(self, part_id: int, columns: list[str] | None = None) -> pd.DataFrame:
        path = self.root / f"{self._shards[part_id]}.parquet"
        with local.open_file(self.root, path.name, local.MAX_TABLE_BYTES) as f:
            try:
                names = pq.read_schema(f).names
                if columns is None:
                    columns = [c for c in names if c not in IMAGE_EXTS]
                table = pq.read_table(f, columns=[c for c in columns if c in names]).to_pandas()
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
                raise CorpusError(f"{path}: not a readable parquet file: {type(err).__name__}: {err}") from None
        missing = [c for c in ("key", "status") if c not in table.columns]
        if missing:
            raise CorpusError(f"{path}: missing img2dataset columns {missing}")
        return table

    def _rows(self, part_id: int) -> pd.DataFrame:
        table = self._table(part_id)
        rows = table[[c for c in (*local.TABLE_FIELDS, "width", "height") if c in table.columns]].assign(
            image_name=table["key"].map(lambda k: k if isinstance(k, str) else None),  # not text: bad_image_name
            part_id=part_id, prompt=table["caption"] if "caption" in table.columns else None,
            generator=local.generators(table, self.generator_column, self.root / f"{self._shards[part_id]}.parquet"))
        errors = table["error_message"] if "error_message" in table.columns else pd.Series(None, index=table.index)
        verdicts = [_verdict(name, status, error) for name, status, error in zip(rows["image_name"], table["status"], errors)]
        return rows.assign(reject=[v[0] for v in verdicts], reject_detail=[v[1] for v in verdicts])

    def _keys(self, part_id: int) -> set[str]:
        if part_id not in self._key_sets:
            self._key_sets[part_id] = set(self._table(part_id, ["key", "status"])["key"].dropna().astype(str))
        return self._key_sets[part_id]

    def open_part(self, part_id: int, max_bytes: int) -> TarPart | ParquetPart | FilesPart:
        if part_id not in self._shards:
            raise CorpusError(f"shard {part_id} has no table")
        name = self._shards[part_id]
        if self.layout == "webdataset":
            return TarPart(local.open_file(self.root, f"{name}.tar"), name)
        if self.layout == "parquet":
            return ParquetPart(local.open_file(self.root, f"{name}.parquet"), name)
        if not (self.root / name).is_dir():
            raise CorpusError(f"{name}/ not found")
        return FilesPart(self.root, name)

    def unexpected_files(self, part_ids) -> int:
        """Files outside the layout (a tar or folder with no table among them: each file of it), plus members
        and shard-folder files that no table row names; ignored, and counted."""
        shards = {self._shards[int(i)] for i in part_ids if int(i) in self._shards}
        expected = {f"{s}{end}" for s in shards for end in (".parquet", "_stats.json")}
        if self.layout == "webdataset":
            expected |= {f"{s}.tar" for s in shards}
        files, count = set(self._files), 0
        for rel in files:
            shard, _, member = rel.partition("/")
            if self.layout == "files" and member and shard in shards:
                count += not self._named(shard, member)
            else:
                count += rel not in expected
        if self.layout == "webdataset":
            count += sum(self._stray_members(s) for s in shards if f"{s}.tar" in files)
        return count

    def _named(self, shard: str, member: str) -> bool:
        """Whether a member is one img2dataset writes for a row of its shard's table."""
        key, _, ext = member.rpartition(".")
        return ext in MEMBER_EXTS and key in self._keys(int(shard))

    def _stray_members(self, shard: str) -> int:
        """Members of a shard's tar that no row names (their headers only are read; a named member that is not
        a regular file is its row's not_a_file reject instead)."""
        try:
            with local.open_file(self.root, f"{shard}.tar") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                return sum(not self._named(shard, m.name) for m in tar)
        except (tarfile.TarError, OSError, EOFError, CorpusError):
            return 0  # an unreadable tar: its drawn rows are part_unreadable rejects already


def _verdict(name, status, error) -> tuple[str, str]:
    """(reject reason, detail) a row gets from the table alone; ("", "") for one to read."""
    if isinstance(name, str) and not safe_member_name(name):
        return "bad_image_path", repr(name)
    if not isinstance(status, str):
        return "bad_field", f"status: {type(status).__name__} is not text"
    if status != "success":
        detail = error if isinstance(error, str) and error else f"status {status!r}"
        return STATUS_REJECTS.get(status, "download_failed"), detail
    return "", ""


class TarPart:
    """A webdataset shard: a header index of the tar (no member read), then each drawn member read on demand."""

    def __init__(self, file: BinaryIO, shard: str):
        self.name = f"{shard}.tar"
        try:
            self.tar = tarfile.open(fileobj=file, mode="r:")
            self.members = {m.name: m for m in self.tar}
        except (tarfile.TarError, OSError, EOFError) as err:
            file.close()
            raise CorpusError(f"{self.name}: not a readable tar: {type(err).__name__}: {err}") from None

    def read(self, key: str, max_bytes: int) -> bytes:
        info = next((self.members[f"{key}.{ext}"] for ext in IMAGE_EXTS if f"{key}.{ext}" in self.members), None)
        if info is None:
            raise MemberError("image_missing", f"{key}.{'|'.join(IMAGE_EXTS)} not in {self.name}")
        if not info.isreg():
            raise MemberError("not_a_file", f"{info.name} is not a regular file in {self.name}")
        if info.size > max_bytes:
            raise MemberError("member_too_large", f"{info.size} bytes > sample.max_member_bytes {max_bytes}")
        try:
            return self.tar.extractfile(info).read()
        except (tarfile.TarError, OSError, EOFError) as err:  # the tar ends inside this member
            raise MemberError("member_unreadable", f"{type(err).__name__}: {err}") from None

    def fields(self, key: str) -> dict:
        return {}  # img2dataset stores no generation fields of its own: the table's are all there is

    def __enter__(self) -> TarPart:
        return self

    def __exit__(self, *exc) -> None:
        self.tar.close()
        self.tar.fileobj.close()  # a file passed to tarfile stays open when it closes


class ParquetPart:
    """A parquet-format shard: its key column indexed, then one row group's image column in memory at a time
    (img2dataset writes a row group per 100 rows), so a shard is never loaded whole."""

    def __init__(self, file: BinaryIO, shard: str):
        path = f"{shard}.parquet"
        try:
            self.file = pq.ParquetFile(file)
            self.column = next((c for c in IMAGE_EXTS if c in self.file.schema_arrow.names), None)
            keys = self.file.read(columns=["key"]).column("key").to_pylist()
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            file.close()
            raise CorpusError(f"{path}: not a readable parquet file: {type(err).__name__}: {err}") from None
        if self.column is None:
            raise CorpusError(f"{path}: no image column ({', '.join(IMAGE_EXTS)}): not the parquet output format")
        self.index: dict[str, int] = {}
        for i, key in enumerate(keys):
            self.index.setdefault(key, i)  # a repeated key: its first row (draw rejects the repeats)
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.starts = [0, *accumulate(sizes)][:-1]
        self.group: tuple[int, list] = (-1, [])
        self.name, self.source = path, file

    def read(self, key: str, max_bytes: int) -> bytes:
        if key not in self.index:
            raise MemberError("image_missing", f"{key} not in {self.name}")
        row = self.index[key]
        g = bisect.bisect_right(self.starts, row) - 1
        if self.group[0] != g:
            try:
                self.group = (g, self.file.read_row_group(g, columns=[self.column]).column(0))
            except Exception as err:  # noqa: BLE001 - a damaged page: the rows of this group only
                raise MemberError("member_unreadable", f"row group {g}: {type(err).__name__}: {err}") from None
        data = self.group[1][row - self.starts[g]].as_py()
        if data is None:
            raise MemberError("image_missing", f"{key} has no {self.column} bytes in {self.name}")
        if not isinstance(data, bytes):
            raise MemberError("bad_field", f"{self.column}: {type(data).__name__} is not image bytes")
        if len(data) > max_bytes:
            raise MemberError("member_too_large", f"{len(data)} bytes > sample.max_member_bytes {max_bytes}")
        return data

    def fields(self, key: str) -> dict:
        return {}

    def __enter__(self) -> ParquetPart:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()
        self.source.close()


class FilesPart:
    """A files-format shard folder: each drawn image read from it, never through a link leading out of the corpus."""

    def __init__(self, root: Path, shard: str):
        self.root, self.shard = root, shard

    def read(self, key: str, max_bytes: int) -> bytes:
        for ext in IMAGE_EXTS:
            rel = f"{self.shard}/{key}.{ext}"
            if os.path.lexists(self.root / rel):
                return local.read_inside(self.root, rel, max_bytes)
        raise MemberError("image_missing", f"{key}.{'|'.join(IMAGE_EXTS)} not in {self.shard}/")

    def fields(self, key: str) -> dict:
        return {}

    def __enter__(self) -> FilesPart:
        return self

    def __exit__(self, *exc) -> None:
        pass
