"""What the readers of corpora made on this machine (img2dataset output, a folder of images) share.

Such a corpus is a folder a user filled, so it may hold anything: symlinks out of it, named pipes, stray
files. Listing never follows a symlink; reading resolves it and refuses a target outside the folder or one
that is not a regular file, so a hostile link can neither leak a file nor block the stage on a pipe.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from PIL import features

from stylemap.corpus.readers.base import CorpusError, MemberError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff",
                  *([".avif"] if features.check_module("avif") else [])}
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


def walk(root: Path) -> list[str]:
    """Relative POSIX paths of every entry under `root` but directories, sorted; symlinks are listed, never
    followed (a link to a directory is one entry, so nothing outside the folder is walked)."""
    def fail(err: OSError):
        raise CorpusError(f"{err.filename}: cannot be listed: {err.strerror}")

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        rel = Path(dirpath).relative_to(root)
        found += [(rel / name).as_posix() for name in filenames + links]
    return sorted(found)


def identity(root: Path, files: list[str]) -> str:
    """Every file's path, size and mtime (a link's target's, or the link's own when it dangles), for resume
    fingerprints: a changed corpus is sampled again, never resumed from shards of the old one."""
    h = hashlib.sha256()
    for rel in files:
        try:
            st = os.stat(root / rel)
        except OSError:
            st = os.lstat(root / rel)
        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_inside(root: Path, rel: str, max_bytes: int) -> bytes:
    """The bytes of regular file `rel` under `root`, at most `max_bytes`; MemberError naming why not."""
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
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)  # should it have become a pipe since, the open won't block
    except OSError as err:
        raise MemberError("member_unreadable", f"{rel}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if info.st_size > max_bytes:
            raise MemberError("member_too_large", f"{info.st_size} bytes > sample.max_member_bytes {max_bytes}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as err:
            raise MemberError("member_unreadable", f"{rel}: {err.strerror}") from None
    if len(data) > max_bytes:
        raise MemberError("member_too_large", f"grew past sample.max_member_bytes {max_bytes} while read")
    return data
