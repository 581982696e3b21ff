"""What the readers of local corpora share: listing, fingerprints, and the one guarded open every file goes through.

A corpus on disk may hold anything: symlinks out of it, named pipes, stray files, a table too large to load.
Every file any reader opens, of any format (a table, a part archive, a folder's image), goes through
`open_inside`: it refuses a target outside the corpus folder, one that is not a regular file, and one too large,
so a hostile link can neither leak a file nor block the stage on a pipe. Parts and tables are opened by
`open_file`, which makes a refusal a CorpusError naming the file.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from PIL import features

from stylemap.corpus.readers.base import CorpusError, MemberError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                  *([".avif"] if features.check_module("avif") else [])}
# the `max_bytes` of a table read whole into memory: the largest any supported corpus publishes (DiffusionDB Large's
# metadata, JourneyDB's train annotations) is ~2 GB
MAX_TABLE_BYTES = 8 << 30
# generation fields a user's own table (img2dataset --save_additional_columns, a folder's prompts file) may
# carry under stylemap's names: sample types and checks them as it does DiffusionDB's (bad ones: bad_field)
TABLE_FIELDS = ["seed", "step", "cfg", "sampler", "user_name", "timestamp"]


def generators(table, column: str, where: Path):
    """The table's column `column` (sources.<name>.generator_column) as each row's generator, or None when no
    column is named; a named column the table lacks is a CorpusError (a typo would leave every model unknown)."""
    if not column:
        return None
    if column not in table.columns:
        raise CorpusError(f"{where}: no column {column!r} (sources.<name>.generator_column); it has "
                          f"{sorted(map(str, table.columns))[:12]}")
    return table[column]


def is_absent(path: Path) -> bool:
    """A local source is absent when its path does not exist or is an empty folder (a corpus not yet fetched)."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def walk(root: Path, follow_links: bool = False) -> list[str]:
    """Relative POSIX paths of every entry under `root` but directories, sorted. Without `follow_links` a link is
    listed, never followed (a link to a directory is one entry), for corpora whose rows are the files listed
    (folder, img2dataset). With it, links to directories are walked once each, for published layouts read at fixed
    paths (DiffusionDB, JourneyDB) whose `images/` may be a link: the fingerprint must see the files read through it."""
    def fail(err: OSError):
        raise CorpusError(f"{err.filename}: cannot be listed: {err.strerror}")

    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail, followlinks=follow_links):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop, or a second link to one folder
            dirnames.clear()
            continue
        seen.add(real)
        links = [] if follow_links else [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / name).as_posix() for name in filenames + links]
    return sorted(found)


def identity(root: Path, files: list[str]) -> str:
    """Every file's path, size and mtime (a link's target's, or the link's own when it dangles), for resume
    fingerprints: a changed corpus is sampled again, never resumed from shards of the old one. Paths are relative
    to the corpus and stats follow links, so a corpus reached through a link has the identity it has without."""
    h = hashlib.sha256()
    for rel in files:
        try:
            st = os.stat(root / rel)
        except OSError:
            st = os.lstat(root / rel)
        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return h.hexdigest()


def open_inside(root: Path, rel: str | Path, max_bytes: int | None = None) -> BinaryIO:
    """Regular file `rel` under `root`, opened for reading: the one guard every file a reader opens goes through.

    It resolves links and refuses a target outside `root` (a link must not leak a file), anything but a regular
    file (a named pipe would block the stage until killed, a device never ends) and a file over `max_bytes` (a
    table read whole must fit in memory); the open itself cannot block, should the file have become a pipe since.
    Raises MemberError(reason, detail); a part or a table is opened by `open_file`, which makes it a CorpusError."""
    try:
        real = (root / rel).resolve(strict=True)
    except FileNotFoundError:  # absent, or a link to nothing
        raise MemberError("image_missing", f"{rel} not found") from None
    except (OSError, RuntimeError) as err:  # a link loop, a folder we may not enter
        raise MemberError("member_unreadable", f"{rel}: {type(err).__name__}: {err}") from None
    if not real.is_relative_to(root.resolve()):
        raise MemberError("bad_image_path", f"{rel} leads outside the corpus folder")
    if not stat.S_ISREG(real.stat().st_mode):  # a pipe, socket, device or folder
        raise MemberError("not_a_file", f"{rel} is not a regular file")
    try:  # should it have become a pipe since, the open won't block, and the check below refuses it
        f = open(real, "rb", opener=lambda path, flags: os.open(path, flags | os.O_NONBLOCK))  # noqa: SIM115
    except OSError as err:
        raise MemberError("member_unreadable", f"{rel}: {err.strerror}") from None
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode):
        f.close()
        raise MemberError("not_a_file", f"{rel} is not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        f.close()
        raise MemberError("member_too_large", f"{rel}: {info.st_size} bytes > {max_bytes}")
    os.set_blocking(f.fileno(), True)
    return f


def open_file(root: Path, rel: str | Path, max_bytes: int | None = None) -> BinaryIO:
    """A part or table file through `open_inside`; CorpusError naming it when refused (its part's rows are then
    part_unreadable, or the corpus cannot be read). A table, read whole, passes MAX_TABLE_BYTES."""
    try:
        return open_inside(root, rel, max_bytes)
    except MemberError as err:
        raise CorpusError(f"{root}/{err.detail}") from None


def read_inside(root: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of regular file `rel` under `root`, at most `max_bytes`; MemberError naming why not."""
    with open_inside(root, rel, max_bytes) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as err:
            raise MemberError("member_unreadable", f"{rel}: {err.strerror}") from None
    if len(data) > max_bytes:
        raise MemberError("member_too_large", f"{rel} grew past {max_bytes} bytes while read")
    return data
