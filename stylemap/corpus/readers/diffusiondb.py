"""DiffusionDB's published layout, local or on the Hugging Face Hub (fetched lazily, part by part).

`metadata.parquet` (13 columns; `metadata-large.parquet` for DiffusionDB Large) and `part-NNNNNN.zip`
files, each holding the images (PNG in 2M, WebP in Large) and `part-NNNNNN.json` ({name: {p, se, c, st, sa}}).
2M keeps its parts under `images/`; Large splits them over `diffusiondb-large-part-1/` (parts up to 10000)
and `diffusiondb-large-part-2/`. On the Hub a part is read by HTTP ranges (only the members sampled) or, with
`draw: parts`, downloaded whole and deleted once read (hub.py).
"""
from __future__ import annotations

import json
import zipfile
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import pandas as pd

import stylemap.corpus.readers.local as local
from stylemap.corpus import hub
from stylemap.corpus.readers.base import CorpusError, MemberError, with_row_columns
from stylemap.params import Source

METADATA_COLUMNS = ["image_name", "prompt", "part_id", "seed", "step", "cfg", "sampler",
                    "width", "height", "user_name", "timestamp", "image_nsfw", "prompt_nsfw"]
PART_FIELDS = {"p": "prompt", "se": "seed", "c": "cfg", "st": "step", "sa": "sampler"}  # part JSON keys


class Corpus:
    """A DiffusionDB 2M or Large corpus (the base.Reader interface)."""

    def __init__(self, src: Source):
        self.src = src
        self.root = Path(src.path)

    @cached_property
    def _files(self) -> list[str]:
        """Every file of a local corpus, walked once (through links to folders: `images/` may be one)."""
        return local.walk(self.root, follow_links=True)

    def unexpected_files(self, part_ids) -> int:
        """Files of a local corpus outside the layout (stray copies, notes): ignored, and counted."""
        if self.src.kind != "local":
            return 0
        expected = {self.metadata_name, *(self.part_path(int(i)) for i in part_ids)}
        return sum(rel not in expected for rel in self._files)

    @property
    def metadata_name(self) -> str:
        return "metadata.parquet" if self.src.layout == "2m" else "metadata-large.parquet"

    def part_path(self, part_id: int) -> str:
        if self.src.layout == "2m":
            return f"images/part-{part_id:06d}.zip"
        return f"diffusiondb-large-part-{1 if part_id <= 10000 else 2}/part-{part_id:06d}.zip"

    @cached_property
    def _commit(self) -> str:
        """The commit `revision` points at now: every Hub file of one run is read at it (a branch moves)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.src.path, self.metadata_name, repo_type="dataset", revision=self.src.revision,
                         endpoint=self.src.endpoint or None)
        return hub.ask(self.metadata_name, get_hf_file_metadata, url, retry_on_errors=True).commit_hash

    def identity(self) -> str:
        """What the corpus holds, for resume fingerprints: every local file's path, size and mtime (a changed
        corpus must not resume from shards of the old one); on the Hub, the commit of the dataset revision."""
        if self.src.kind != "local":
            return f"{self.src.path}@{self._commit}"
        return local.identity(self.root, self._files)

    def metadata(self) -> pd.DataFrame:
        name = self.metadata_name
        if self.src.kind == "local":
            folder = self.root
        else:
            path, _ = hub.download(self.src.path, name, self._commit, self.src.endpoint or None, self.src.cache_dir,
                                   keep=True)
            if path is None:
                raise CorpusError(f"{self.src.path}: {name} not found on the Hub")
            folder, name = path.resolve().parent, path.resolve().name  # the cache's blob, which the snapshot links
        with local.open_file(folder, name, local.MAX_TABLE_BYTES) as f:
            try:
                meta = pd.read_parquet(f)
            except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
                raise CorpusError(f"{folder / name}: not a readable parquet file: {type(err).__name__}: {err}") from None
        missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
        if missing:
            raise CorpusError(f"{path}: missing DiffusionDB columns {missing}")
        return with_row_columns(meta[METADATA_COLUMNS])

    def open_part(self, part_id: int, max_bytes: int) -> ZipPart:
        """The part zip: a local file; on the Hub, read by ranges, or (draw: parts) downloaded whole and
        deleted when the part is closed unless `keep_parts`."""
        relpath = self.part_path(part_id)
        if self.src.kind == "local":
            return ZipPart.open(local.open_file(self.root, relpath), part_id, max_bytes)
        endpoint = self.src.endpoint or None
        if self.src.draw == "parts":
            path, drop = hub.download(self.src.path, relpath, self._commit, endpoint, self.src.cache_dir,
                                      self.src.keep_parts)
            try:
                return ZipPart.open(path and local.open_file(path.resolve().parent, path.resolve().name), part_id,
                                    max_bytes, drop)
            except CorpusError:
                drop()
                raise
        return ZipPart.open(hub.open_ranges(self.src.path, relpath, self._commit, endpoint), part_id, max_bytes)


class ZipPart:
    """An opened part zip: members by name, and the generation fields its part JSON stores per image.

    A zip read by ranges (hub.RangeFile) gets each member's whole extent in one request before zipfile reads it."""

    def __init__(self, zf: zipfile.ZipFile, entries: dict, on_close=None):
        self.zf, self.entries, self.on_close = zf, entries, on_close

    @classmethod
    def open(cls, source: BinaryIO | hub.RangeFile | None, part_id: int, max_bytes: int, on_close=None) -> ZipPart:
        """Open a part zip (an open file or a RangeFile; the part closes it) and its JSON; CorpusError naming the
        file when either is missing or broken."""
        name = f"part-{part_id:06d}"
        if source is None:
            raise CorpusError(f"{name}.zip not found")
        try:
            zf = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            source.close()
            raise CorpusError(f"{source.name}: {type(err).__name__}: {err}") from None
        part = cls(zf, {}, on_close)
        try:
            part.entries = part_entries(zf, name, lambda member: part.read(member, max_bytes))
        except CorpusError as err:
            zf.close()
            source.close()
            raise CorpusError(f"{source.name}: {err}") from None
        return part

    def read(self, image_name: str, max_bytes: int) -> bytes:
        info = self.zf.NameToInfo.get(image_name)
        if isinstance(self.zf.fp, hub.RangeFile) and info is not None and info.file_size <= max_bytes:
            start = info.header_offset
            self.zf.fp.prefetch(start, start + zipfile.sizeFileHeader + len(info.orig_filename.encode()) + len(info.extra)
                                + hub.LOCAL_SLACK + min(info.compress_size, max_bytes + 1))
        return read_member(self.zf, image_name, max_bytes)

    def fields(self, image_name: str) -> dict | None:
        entry = self.entries.get(image_name)
        if not isinstance(entry, dict):
            return None
        return {PART_FIELDS[k]: v for k, v in entry.items() if k in PART_FIELDS}

    def __enter__(self) -> ZipPart:
        return self

    def __exit__(self, *exc) -> None:
        source = self.zf.fp  # a file passed to ZipFile stays open when it closes
        self.zf.close()
        source.close()
        if self.on_close:
            self.on_close()


def read_member(zf: zipfile.ZipFile, name: str, max_bytes: int) -> bytes:
    """One member's bytes, inflating at most `max_bytes` (the header's size is checked first, and the stream
    is cut there too, because headers lie); any fault reading it is a MemberError naming the reason."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise MemberError("image_missing", f"{name} not in {Path(zf.filename or '').name}") from None
    if info.file_size > max_bytes:
        raise MemberError("member_too_large", f"{info.file_size} bytes > sample.max_member_bytes {max_bytes}")
    try:
        with zf.open(info) as stream:
            data = stream.read(max_bytes + 1)
    except hub.FetchError:
        raise  # the network failed, not the member
    except Exception as err:  # noqa: BLE001 - encrypted, CRC mismatch, bad deflate, unknown method: this member only
        raise MemberError("member_unreadable", f"{type(err).__name__}: {err}") from None
    if len(data) > max_bytes:
        raise MemberError("member_too_large", f"inflates past sample.max_member_bytes {max_bytes}")
    return data


def part_entries(zf: zipfile.ZipFile, name: str, read) -> dict:
    """The part JSON `name`.json of an open part zip, read by `read(member)`; CorpusError naming the fault."""
    if f"{name}.json" not in zf.NameToInfo:
        raise CorpusError(f"{name}.json missing from the zip")
    try:
        meta = json.loads(read(f"{name}.json").decode("utf-8"))
    except MemberError as err:
        raise CorpusError(f"{name}.json: {err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CorpusError(f"{name}.json is not UTF-8 JSON: {type(err).__name__}: {err}") from None
    if not isinstance(meta, dict):
        raise CorpusError(f"{name}.json must hold an object, got {type(meta).__name__}")
    return meta
