"""DiffusionDB's published layout, local or on the Hugging Face Hub (fetched lazily, part by part).

`metadata.parquet` (13 columns; `metadata-large.parquet` for DiffusionDB Large) and `part-NNNNNN.zip`
files, each holding the images (PNG in 2M, WebP in Large) and `part-NNNNNN.json` ({name: {p, se, c, st, sa}}).
2M keeps its parts under `images/`; Large splits them over `diffusiondb-large-part-1/` (parts up to 10000)
and `diffusiondb-large-part-2/`.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from functools import cached_property
from pathlib import Path

import pandas as pd

from stylemap.params import Source

METADATA_COLUMNS = ["image_name", "prompt", "part_id", "seed", "step", "cfg", "sampler",
                    "width", "height", "user_name", "timestamp", "image_nsfw", "prompt_nsfw"]


class CorpusError(ValueError):
    """The corpus on disk does not have DiffusionDB's layout; the message names the file."""


class Corpus:
    def __init__(self, src: Source):
        self.src = src
        self.root = Path(src.path)

    @cached_property
    def _files(self) -> dict[str, Path]:
        """File name -> path of a local corpus, walked once (not once per part)."""
        found: dict[str, Path] = {}
        for path in sorted(self.root.rglob("*")):
            found.setdefault(path.name, path)
        return found

    def _local(self, relpath: str) -> Path | None:
        if self.src.kind == "local":
            return self._files.get(Path(relpath).name)
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(self.src.path, relpath, repo_type="dataset", revision=self.src.revision,
                                    cache_dir=self.src.cache_dir, endpoint=self.src.endpoint or None))

    def identity(self) -> str:
        """What the corpus holds, for resume fingerprints: every local file's path, size and mtime (a changed
        corpus must not resume from shards of the old one); on the Hub, the dataset revision."""
        if self.src.kind != "local":
            return f"{self.src.path}@{self.src.revision}"
        h = hashlib.sha256()
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                st = path.stat()
                h.update(f"{path.relative_to(self.root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def metadata(self) -> pd.DataFrame:
        name = "metadata.parquet" if self.src.layout == "2m" else "metadata-large.parquet"
        path = self._local(name)
        if path is None or not path.exists():
            raise CorpusError(f"{self.root}: {name} not found")
        meta = pd.read_parquet(path)
        missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
        if missing:
            raise CorpusError(f"{path}: missing DiffusionDB columns {missing}")
        return meta[METADATA_COLUMNS]

    def part(self, part_id: int) -> Path | None:
        if self.src.layout == "2m":
            relpath = f"images/part-{part_id:06d}.zip"
        else:
            relpath = f"diffusiondb-large-part-{1 if part_id <= 10000 else 2}/part-{part_id:06d}.zip"
        return self._local(relpath)


def read_part(path: Path | None, part_id: int) -> tuple[zipfile.ZipFile, dict]:
    """Open a part zip and its JSON; CorpusError naming the file when either is missing or broken."""
    name = f"part-{part_id:06d}"
    if path is None or not path.exists():
        raise CorpusError(f"{name}.zip not found")
    try:
        zf = zipfile.ZipFile(path)
        return zf, json.loads(zf.read(f"{name}.json"))
    except KeyError:
        raise CorpusError(f"{path}: {name}.json missing from the zip") from None
    except (zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise CorpusError(f"{path}: {err}") from None
