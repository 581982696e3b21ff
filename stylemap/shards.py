"""One shard runner for every long stage: streaming, atomic, resumable.

A stage says *what* to compute for a batch of rows (a pure function DataFrame -> DataFrame);
this module decides *how*: it streams the input parquet shards in fixed-size batches (never
the whole corpus in memory), writes output shard i atomically (tmp file + rename), and on a
rerun skips shards that already exist. A fingerprint file (`_run.json`: params + input
listing) guards against resuming with different inputs: on mismatch the directory is cleared.
DVC stages that use it declare their outs `persist: true`, so a crash keeps finished shards.
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
import pyarrow.parquet as pq
from tqdm import tqdm

from stylemap import schemas
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


def code_fingerprint(stage: str, root: str | Path = ".") -> str:
    """Hash of the code a stage runs (its dvc.yaml deps under stages/ and stylemap/): persisted shards made by
    other code are not resumed, because DVC re-runs the stage on a code change and trusts what it finds."""
    from stylemap.params import REPO, stage_spec

    h = hashlib.sha256()
    for dep in sorted(stage_spec(stage, root).get("deps", [])):
        if dep.split("/")[0] in ("stages", "stylemap"):
            target = REPO / dep
            for f in sorted(target.rglob("*")) if target.is_dir() else [target]:
                if f.is_file() and "__pycache__" not in f.parts:
                    h.update(f"{f.relative_to(REPO)}\n".encode() + f.read_bytes())
    return h.hexdigest()


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


def pending_shards(in_files: list[Path], out_dir: Path, *, shard_size: int, params: dict,
                   columns: list[str] | None, stats: dict, bar: tqdm) -> Iterator[tuple[pa.Table, Path]]:
    """(input table, target file) of every shard still to do, in order. Shards a previous run finished under the
    same fingerprint are counted in `stats` as resumed and skipped. Both engines (local threads, Ray) use this,
    so a shard is the same rows with the same file name whichever engine made it."""
    prepare_dir(out_dir, {"params": params, "inputs": input_fingerprint(in_files), "shard_size": shard_size})
    for i, table in enumerate(iter_batches(in_files, shard_size, columns)):
        stats["shards"] += 1
        target = out_dir / f"shard-{i:05d}.parquet"
        if target.exists():
            stats["shards_resumed"] += 1
            stats["rows_out"] += pq.ParquetFile(target).metadata.num_rows
            bar.update(table.num_rows)
            continue
        yield table, target


@dataclass(frozen=True)
class Job:
    """One output directory of a stage (usually one source): its input shards, the params that fingerprint its
    shards and, optionally, `expand` (input rows -> rows to process, e.g. one per augmentation recipe).
    The Ray engine runs all of a stage's jobs through one pipeline, so its engines start once per stage."""
    name: str
    in_files: list[Path]
    out_dir: Path
    params: dict
    expand: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def new_stats(in_files: list[Path]) -> dict:
    return {"shards": 0, "shards_resumed": 0, "rows_in": count_rows(in_files), "rows_out": 0}


def map_shards(
    in_files: list[Path],
    out_dir: str | Path,
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    shard_size: int,
    params: dict,
    schema: str,
    columns: list[str] | None = None,
    desc: str = "shards",
) -> dict:
    """Apply `fn` to every `shard_size` rows of `in_files`; output shard i -> out_dir/shard-i.parquet,
    checked against `schemas.SCHEMAS[schema]`. One shard is in memory at a time.

    Returns counts: shards total, shards skipped because a previous run finished them, rows.
    (`stylemap.cluster.map_shards_ray` keeps the same contract with the work spread over a Ray cluster.)
    """
    stats = new_stats(in_files)
    with tqdm(total=stats["rows_in"], desc=desc, unit="img", dynamic_ncols=True) as bar:
        for table, target in pending_shards(in_files, Path(out_dir), shard_size=shard_size, params=params,
                                            columns=columns, stats=stats, bar=bar):
            result = fn(table.to_pandas())
            schemas.write(schema, result, target)
            stats["rows_out"] += len(result)
            bar.update(table.num_rows)
    return stats


def map_jobs(jobs: list[Job], fn: Callable[[pd.DataFrame], pd.DataFrame], *, desc: str, **args) -> dict:
    """`map_shards` over each job in turn (the local counterpart of `cluster.map_shards_ray`), a job's `expand`
    applied before `fn`. Returns each job's stats by name."""
    def job_fn(job: Job):
        return fn if job.expand is None else (lambda df: fn(job.expand(df)))
    return {job.name: map_shards(job.in_files, job.out_dir, job_fn(job), params=job.params, desc=f"{desc} {job.name}",
                                 **args) for job in jobs}


def read_dir(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read all shards of a (small-column) stage output into one frame."""
    files = shard_files(directory)
    if not files:
        return pd.DataFrame(columns=columns or [])
    return pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)

