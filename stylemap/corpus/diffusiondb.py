"""DiffusionDB's published layout, local or on the Hugging Face Hub (fetched lazily, part by part).

`metadata.parquet` (13 columns; `metadata-large.parquet` for DiffusionDB Large) and `part-NNNNNN.zip`
files, each holding the images (PNG in 2M, WebP in Large) and `part-NNNNNN.json` ({name: {p, se, c, st, sa}}).
2M keeps its parts under `images/`; Large splits them over `diffusiondb-large-part-1/` (parts up to 10000)
and `diffusiondb-large-part-2/`.
"""
from __future__ import annotations

import json
import zipfile
from functools import cached_property
from pathlib import Path

import pandas as pd

from stylemap.corpus import local
from stylemap.corpus.formats import CorpusError, MemberError, with_row_columns
from stylemap.params import Source

METADATA_COLUMNS = ["image_name", "prompt", "part_id", "seed", "step", "cfg", "sampler",
                    "width", "height", "user_name", "timestamp", "image_nsfw", "prompt_nsfw"]
PART_FIELDS = {"p": "prompt", "se": "seed", "c": "cfg", "st": "step", "sa": "sampler"}  # part JSON keys


class Corpus:
    """A DiffusionDB 2M or Large corpus (the formats.Reader interface)."""

    def __init__(self, src: Source):
        self.src = src
        self.root = Path(src.path)

    @cached_property
    def _files(self) -> list[Path]:
        """Every file of a local corpus, walked once."""
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def unexpected_files(self, part_ids) -> int:
        """Files of a local corpus outside the layout (stray copies, notes): ignored, and counted."""
        if self.src.kind != "local":
            return 0
        expected = {self.root / self.metadata_name, *(self.root / self.part_path(int(i)) for i in part_ids)}
        return sum(p not in expected for p in self._files)

    @property
    def metadata_name(self) -> str:
        return "metadata.parquet" if self.src.layout == "2m" else "metadata-large.parquet"

    def part_path(self, part_id: int) -> str:
        if self.src.layout == "2m":
            return f"images/part-{part_id:06d}.zip"
        return f"diffusiondb-large-part-{1 if part_id <= 10000 else 2}/part-{part_id:06d}.zip"

    def _local(self, relpath: str) -> Path | None:
        """The file at its layout path (never a same-named file elsewhere in the tree)."""
        if self.src.kind == "local":
            path = self.root / relpath
            return path if path.is_file() else None
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            return Path(hf_hub_download(self.src.path, relpath, repo_type="dataset", revision=self.src.revision,
                                        cache_dir=self.src.cache_dir, endpoint=self.src.endpoint or None))
        except EntryNotFoundError:
            return None  # like a local file that is not there: its rows become counted rejects

    def identity(self) -> str:
        """What the corpus holds, for resume fingerprints: every local file's path, size and mtime (a changed
        corpus must not resume from shards of the old one); on the Hub, the dataset revision."""
        if self.src.kind != "local":  # a branch name moves: the commit it points at now is the identity
            from huggingface_hub import get_hf_file_metadata, hf_hub_url

            url = hf_hub_url(self.src.path, self.metadata_name, repo_type="dataset", revision=self.src.revision,
                             endpoint=self.src.endpoint or None)
            return f"{self.src.path}@{get_hf_file_metadata(url).commit_hash}"
        return local.identity(self.root, [p.relative_to(self.root).as_posix() for p in self._files])

    def metadata(self) -> pd.DataFrame:
        name = self.metadata_name
        path = self._local(name)
        if path is None or not path.exists():
            raise CorpusError(f"{self.root}: {name} not found")
        try:
            meta = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise CorpusError(f"{path}: not a readable parquet file: {type(err).__name__}: {err}") from None
        missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
        if missing:
            raise CorpusError(f"{path}: missing DiffusionDB columns {missing}")
        return with_row_columns(meta[METADATA_COLUMNS])

    def part(self, part_id: int) -> Path | None:
        return self._local(self.part_path(part_id))

    def open_part(self, part_id: int, max_bytes: int) -> ZipPart:
        return ZipPart(*read_part(self.part(part_id), part_id, max_bytes))


class ZipPart:
    """An opened part zip: members by name, and the generation fields its part JSON stores per image."""

    def __init__(self, zf: zipfile.ZipFile, entries: dict):
        self.zf, self.entries = zf, entries

    def read(self, image_name: str, max_bytes: int) -> bytes:
        return read_member(self.zf, image_name, max_bytes)

    def fields(self, image_name: str) -> dict | None:
        entry = self.entries.get(image_name)
        if not isinstance(entry, dict):
            return None
        return {PART_FIELDS[k]: v for k, v in entry.items() if k in PART_FIELDS}

    def __enter__(self) -> ZipPart:
        return self

    def __exit__(self, *exc) -> None:
        self.zf.close()


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
    except Exception as err:  # noqa: BLE001 - encrypted, CRC mismatch, bad deflate, unknown method: this member only
        raise MemberError("member_unreadable", f"{type(err).__name__}: {err}") from None
    if len(data) > max_bytes:
        raise MemberError("member_too_large", f"inflates past sample.max_member_bytes {max_bytes}")
    return data


def read_part(path: Path | None, part_id: int, max_bytes: int) -> tuple[zipfile.ZipFile, dict]:
    """Open a part zip and its JSON; CorpusError naming the file when either is missing or broken."""
    name = f"part-{part_id:06d}"
    if path is None or not path.exists():
        raise CorpusError(f"{name}.zip not found")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CorpusError(f"{path}: {type(err).__name__}: {err}") from None
    if f"{name}.json" not in zf.namelist():
        zf.close()
        raise CorpusError(f"{path}: {name}.json missing from the zip")
    try:
        meta = json.loads(read_member(zf, f"{name}.json", max_bytes).decode("utf-8"))
    except MemberError as err:
        zf.close()
        raise CorpusError(f"{path}: {name}.json: {err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        zf.close()
        raise CorpusError(f"{path}: {name}.json is not UTF-8 JSON: {type(err).__name__}: {err}") from None
    if not isinstance(meta, dict):
        zf.close()
        raise CorpusError(f"{path}: {name}.json must hold an object, got {type(meta).__name__}")
    return zf, meta
