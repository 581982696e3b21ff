"""The one runner of every heavy stage (describe, label, embed, predict), on either executor.

A stage says *what* it computes as a `Work` (the datatrove shape: a step knows nothing of its executor): the
columns it reads, the CPU work per row (`prepare`), the inference built from one model spec (an object with
`local()` and `on_ray(ds)`, e.g. `teacher.engine.VllmSpec`, `model.embedding.EncoderSpec`), and how a shard's
rows become its output (`finish`). The `Executor`, picked once from the stage's params, decides *where*:

- local: this process; `prepare` runs `loader_workers` batches ahead of the inference in DataLoader workers;
- ray: `cluster.stream`, parts read on the driver's node, `shards_in_flight` at a time, `block_rows` a block.

Both give the same rows for the same part, so shard files, resume and counts are the same whichever made them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from tqdm import tqdm

from stylemap import schemas
from stylemap.shards import Job, Part


@dataclass(frozen=True)
class Work:
    name: str
    columns: list[str] | None  # input columns read (None: all)
    finish: Callable[[pd.DataFrame], pd.DataFrame]  # one part's inferred rows, in input order -> its output frame
    schema: str | None = None  # the output shards' schema (stages that write their own output: None)
    prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # rows -> as many prepared rows, in order
    inference: object | None = None  # local() -> context of a rows -> rows function; on_ray(dataset) -> dataset


@dataclass(frozen=True)
class Executor:
    kind: Literal["local", "ray"]
    loader_workers: int = 0  # local: processes that run `prepare` ahead of the inference
    shards_in_flight: int = 2  # ray: parts whose input rows may be in the object store at once
    block_rows: int = 64  # ray: rows per block
    temp_dir: str = ""  # ray: a started cluster's session folder ("" = Ray's default)
    spill_dir: str = ""  # ray: where a started cluster's object store spills ("" = in its session folder)


def stream(work: Work, parts: list[tuple[Part, int]], executor: Executor) -> Iterator[tuple[Part, pd.DataFrame]]:
    """(part, `work.finish` of its rows) for each (part, its row count > 0), in the order given. No part, no
    engine started."""
    if not parts:
        return
    if executor.kind == "ray":
        from stylemap import cluster

        # Ray Data's first batching step holds rows until it has a batch: the window must still admit the
        # largest part beside a batch's worth of held rows, or both would wait for each other
        batch, largest = getattr(work.inference, "batch_size", 1), max(n for _, n in parts)
        if (executor.shards_in_flight - 1) * largest < batch:
            raise cluster.ClusterError(f"{work.name}: (ray.shards_in_flight - 1) x shard rows ({largest}) must reach "
                                       f"the batch size {batch}")

        cluster.connect(executor.temp_dir, executor.spill_dir)
        done = cluster.stream(parts, work.columns, lambda ds: _on_ray(work, ds), desc=work.name,
                              shards_in_flight=executor.shards_in_flight, block_rows=executor.block_rows)
        waiting: dict[int, pd.DataFrame] = {}  # finished parts wait here until those before them are done
        for k, (part, _) in enumerate(parts):
            while k not in waiting:
                i, rows = next(done)
                waiting[i] = work.finish(rows)
            yield part, waiting.pop(k)
        return
    frames = (part.read(work.columns) for part, _ in parts)  # local() is left as the last frame is done
    for frame, (part, _) in zip(_local(work, frames, executor.loader_workers), parts):
        yield part, frame


def apply(work: Work, rows: pd.DataFrame) -> pd.DataFrame:
    """The work on rows in memory, in this process (the CLI's few images)."""
    return next(_local(work, [rows], loader_workers=0))


def _local(work: Work, frames, loader_workers: int) -> Iterator[pd.DataFrame]:
    """`work.finish` of each frame: its inference opened once for all of them, `prepare` run batch by batch."""
    with work.inference.local() if work.inference is not None else nullcontext() as infer:
        for rows in frames:
            step = max(getattr(work.inference, "rows_per_call", None) or len(rows), 1)
            prepared = _prepared(work, [rows.iloc[i:i + step] for i in range(0, len(rows), step)], loader_workers)
            yield work.finish(pd.concat([infer(b) if infer else b for b in prepared], ignore_index=True))


def run(work: Work, jobs: list[Job], executor: Executor, *, shard_size: int) -> dict:
    """`work` over every pending part of `jobs`, each written atomically to its shard file (an empty part: the
    schema's empty table, with no work done). Returns each job's stats by name."""
    stats = {job.name: job.stats() for job in jobs}
    todo = []
    for job in jobs:
        todo += [(part, part.count(), job.name) for part in job.pending(shard_size, stats[job.name])]
    owner = {part.target: name for part, _, name in todo}
    with tqdm(total=sum(s["rows_in"] for s in stats.values()), desc=work.name, unit="img", dynamic_ncols=True) as bar:
        bar.update(sum(s["rows_in"] for s in stats.values()) - sum(p.stop - p.start for p, _, _ in todo))
        for part, n, _ in todo:
            if not n:
                schemas.write(work.schema, schemas.empty(work.schema), part.target)
                bar.update(part.stop - part.start)
        for part, frame in stream(work, [(part, n) for part, n, _ in todo if n], executor):
            schemas.write(work.schema, frame, part.target)
            stats[owner[part.target]]["rows_out"] += len(frame)
            bar.update(part.stop - part.start)
    return stats


def _prepared(work: Work, batches: list[pd.DataFrame], loader_workers: int):
    if work.prepare is None:
        return batches
    if not loader_workers:
        return map(work.prepare, batches)
    from torch.utils.data import DataLoader

    return DataLoader(_Batches(batches, work.prepare), batch_size=None, num_workers=loader_workers,
                      collate_fn=_same)


class _Batches:
    """Batches prepared by index, as a DataLoader's dataset (its workers run `prepare`)."""

    def __init__(self, batches: list[pd.DataFrame], prepare: Callable):
        self.batches, self.prepare = batches, prepare

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> pd.DataFrame:
        return self.prepare(self.batches[i])


def _same(batch):
    return batch


def _on_ray(work: Work, ds):
    """The work's steps on a Ray dataset: `prepare` in CPU tasks, then the inference's own stages."""
    from stylemap import cluster

    if work.prepare is not None:
        ds = ds.map_batches(lambda rows: work.prepare(rows).assign(**{cluster.ROW: rows[cluster.ROW].to_numpy()}),
                            batch_format="pandas", batch_size=None, **cluster.task_cpus())  # a block a call
    return work.inference.on_ray(ds) if work.inference is not None else ds


def executor_for(kind: str, ray, loader_workers: int = 0) -> Executor:
    """The executor a heavy stage's params pick: `<stage>.executor`, and the `ray` section's streaming bounds."""
    return Executor(kind, loader_workers=loader_workers, shards_in_flight=ray.shards_in_flight,
                    block_rows=ray.block_rows, temp_dir=ray.temp_dir, spill_dir=ray.spill_dir)
