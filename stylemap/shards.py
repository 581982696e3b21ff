"""Stage outputs as parquet shards: reading a job's input shard by shard, resuming, pruning.

A heavy stage's output directory holds `shard-i.parquet` files, each made from rows [i * shard_size,
(i + 1) * shard_size) of its inputs (`Part`), written atomically (tmp file + rename). On a rerun, shards that
exist are skipped. A fingerprint file (`_run.json`: params + input listing) guards against resuming with
different inputs: on mismatch the directory is cleared. DVC stages that use it declare their outs
`persist: true`, so a crash keeps finished shards. What runs on the rows, and where, is stylemap/runner.py's.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stylemap.files import write_text_atomic

FINGERPRINT = "_run.json"


def shard_files(directory: str | Path) -> list[Path]:
    """Parquet shards of a stage output, in a stable order (recursive, sorted by path)."""
    return sorted(Path(directory).rglob("shard-*.parquet"))


def count_rows(files: list[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def iter_batches(files: list[Path], batch_size: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Re-chunk rows of `files` into tables of exactly `batch_size` rows (the last may be short).

    Only one parquet row group plus one batch is held at a time, so memory stays bounded.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= batch_size:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, batch_size)
                rest = table.slice(batch_size)
                pending = rest.to_batches()
                pending_rows = rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending)


def prune(out_dir: Path, keep) -> None:
    """Delete entries of a persisted output whose name (less `.parquet`) is not in `keep`: sources no longer
    listed or present must not leave shards behind for the next stage to read."""
    if not out_dir.exists():
        return
    for path in out_dir.iterdir():
        if not path.name.startswith(("_", ".")) and path.name.removesuffix(".parquet") not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def prepare_dir(out_dir: Path, fingerprint: dict) -> None:
    """Keep finished shards only if they were made from the same inputs and params."""
    marker = out_dir / FINGERPRINT
    wanted = json.dumps(fingerprint, sort_keys=True, default=str)
    if out_dir.exists() and (not marker.exists() or marker.read_text() != wanted):
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for tmp in out_dir.glob(".*.tmp"):
        tmp.unlink()
    write_text_atomic(marker, wanted)


def input_fingerprint(files: list[Path]) -> str:
    """Cheap content identity of input shards: names, sizes and parquet footers' row counts."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f}:{f.stat().st_size}:{pq.ParquetFile(f).metadata.num_rows}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Part:
    """Rows [start, stop) of a job's input files (after the job's `expand`): one output shard's input. Both
    executors read it with `read`, the Ray one inside a read task on the driver's node, whose working directory is
    the cluster's, not the stage's: so `files` are absolute."""
    files: tuple[Path, ...]
    rows: tuple[int, ...]  # rows of each file
    start: int
    stop: int
    expand: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    target: Path | None = None  # the shard file it becomes; None for a stage that writes its own output

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        tables, first = [], 0
        for f, n in zip(self.files, self.rows):
            lo, hi = max(self.start, first), min(self.stop, first + n)
            if lo < hi:
                tables.append(_read_rows(f, lo - first, hi - first, columns))
            first += n
        frame = pa.concat_tables(tables).to_pandas()
        return frame if self.expand is None else self.expand(frame)

    def count(self) -> int:
        """Rows the part gives: an `expand` is applied to the image ids alone."""
        return self.stop - self.start if self.expand is None else len(self.read(["image_id"]))


def _read_rows(path: Path, lo: int, hi: int, columns: list[str] | None) -> pa.Table:
    """Rows [lo, hi) of one parquet file, reading only the row groups that hold them."""
    f = pq.ParquetFile(path)
    groups, first, offset = [], None, 0
    for g in range(f.metadata.num_row_groups):
        n = f.metadata.row_group(g).num_rows
        if offset < hi and offset + n > lo:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    return f.read_row_groups(groups, columns=columns).slice(lo - first, hi - lo)


def parts(files: list[Path], shard_size: int, expand=None, out_dir: Path | None = None) -> list[Part]:
    """`files` cut into parts of `shard_size` rows, the last possibly shorter; part i -> out_dir/shard-i."""
    rows = tuple(pq.ParquetFile(f).metadata.num_rows for f in files)
    return [Part(tuple(Path(f).absolute() for f in files), rows, start, min(start + shard_size, sum(rows)), expand,
                 out_dir / f"shard-{start // shard_size:05d}.parquet" if out_dir else None)
            for start in range(0, sum(rows), shard_size)]


@dataclass(frozen=True)
class Job:
    """One output directory of a stage (usually one source): its input shards, the params that fingerprint its
    shards and, optionally, `expand` (input rows -> rows to process, e.g. one per augmentation recipe; it must
    work on the `image_id` column alone, so that a part's row count is known before its images are read).
    A stage runs all its jobs through one runner call, so its engines start once per stage."""
    name: str
    in_files: list[Path]
    out_dir: Path
    params: dict
    expand: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def pending(self, shard_size: int, stats: dict) -> list[Part]:
        """The parts still to do. Shards a previous run finished under the same fingerprint are counted in
        `stats` as resumed and skipped; a shard is the same rows with the same file name whichever executor
        made it."""
        prepare_dir(self.out_dir, {"params": self.params, "inputs": input_fingerprint(self.in_files),
                                   "shard_size": shard_size})
        todo = []
        for part in parts(self.in_files, shard_size, self.expand, self.out_dir):
            stats["shards"] += 1
            if part.target.exists():
                stats["shards_resumed"] += 1
                stats["rows_out"] += pq.ParquetFile(part.target).metadata.num_rows
            else:
                todo.append(part)
        return todo

    def stats(self) -> dict:
        return {"shards": 0, "shards_resumed": 0, "rows_in": count_rows(self.in_files), "rows_out": 0}


def write_subset(files: list[Path], ids: set, out: Path, columns: list[str] | None = None) -> Path:
    """The rows of (non-empty) `files` whose image_id is in `ids`, in input order, as one parquet file at `out` (written
    atomically, a row group at a time: images never all in memory). A file already holding exactly those ids in
    that order is kept, so a resumed stage neither rewrites it nor changes its fingerprint."""
    if out.exists() and pq.read_table(out, columns=["image_id"]).column(0).to_pylist() == [
            i for f in files for i in pq.read_table(f, columns=["image_id"]).column(0).to_pylist() if i in ids]:
        return out
    wanted = pa.array(sorted(ids), pa.string())
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=256, columns=columns):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_in(table["image_id"], value_set=wanted))
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    writer.close()
    tmp.replace(out)
    return out


def read_dir(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read all shards of a (small-column) stage output into one frame."""
    files = shard_files(directory)
    if not files:
        return pd.DataFrame(columns=columns or [])
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)

