"""The Ray engine: a stage's heavy per-row work spread over a Ray cluster, while the stage stays DVC's.

The stage process is the Ray *driver*. It walks its input shards exactly as the local engine does
(`shards.pending_shards`: same shard boundaries, fingerprint and resume), puts the shards still to do into
Ray's object store, runs a Ray Data pipeline over them, and streams the result rows back. Each shard is
written here, atomically, once all of its rows are back, by the same schema check as the local engine. So:

- workers never read `data/` or write a DVC out: inputs travel through the object store (spilled to local disk
  when it fills up) and only the driver writes, so no shared filesystem is needed;
- a shard finished before a crash (even SIGKILL of the driver) is not redone on the rerun;
- a worker killed mid-run costs only its in-flight blocks: Ray Data restarts the actor and retries them, and
  the driver checks that every shard comes back with each of its rows exactly once.

`RAY_ADDRESS` names the cluster (`ray start --head` / KubeRay); unset, `ray.init` starts one on this machine.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from stylemap import schemas, shards

ROW = "_row"  # a row's position among the stage's pending rows: routes streamed rows back to their shard


class ClusterError(RuntimeError):
    """The Ray cluster cannot run what the params ask (e.g. more GPU replicas than it has GPUs)."""


def connect():
    """The `ray` module, initialised: the cluster `RAY_ADDRESS` names, or a new local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False  # the stage's own tqdm shows progress
    return ray


def cluster_gpus() -> int:
    return int(connect().cluster_resources().get("GPU", 0))


def replica_count(replicas: int, gpus_each: float) -> int:
    """Actors to start: `replicas`, or (0) as many as the cluster's GPUs hold, one on a CPU cluster; more GPU
    replicas than the cluster holds is an error (Ray would wait for them forever)."""
    gpus = cluster_gpus()
    if not gpus_each:
        return replicas or 1
    n = replicas or max(int(gpus // gpus_each), 1)
    if n * gpus_each > gpus:
        raise ClusterError(f"{n} replicas x {gpus_each:g} GPU(s) each need {n * gpus_each:g} GPUs; the Ray cluster "
                           f"has {gpus}: lower `replicas` (or tensor_parallel_size), or add nodes")
    return n


def ray_actors(n: int):
    """A fixed pool of `n` actors for `map_batches`."""
    return connect().data.ActorPoolStrategy(size=n)


def map_shards_ray(jobs: list[shards.Job], pipeline: Callable, finish: Callable[[pd.DataFrame], pd.DataFrame], *,
                   shard_size: int, schema: str, columns: list[str] | None = None, desc: str = "shards") -> dict:
    """`shards.map_shards` on Ray, for all of a stage's jobs at once (one pipeline, so engines start once):
    `pipeline(dataset) -> dataset` does the per-row work on the cluster (it must keep the ROW column),
    `finish(rows of one shard, in input order) -> shard frame` runs here. Returns each job's stats by name."""
    ray = connect()
    stats = {job.name: shards.new_stats(job.in_files) for job in jobs}
    with tqdm(total=sum(s["rows_in"] for s in stats.values()), desc=desc, unit="img", dynamic_ncols=True) as bar:
        targets, starts, refs = [], [], []
        offset = 0
        for job in jobs:
            for table, target in shards.pending_shards(job.in_files, Path(job.out_dir), shard_size=shard_size,
                                                       params=job.params, columns=columns, stats=stats[job.name],
                                                       bar=bar):
                if job.expand is not None:
                    table = pa.Table.from_pandas(job.expand(table.to_pandas()), preserve_index=False)
                if not table.num_rows:  # nothing to send: the shard is the schema's empty table, as locally
                    schemas.write(schema, schemas.empty(schema), target)
                    continue
                refs.append(ray.put(table.append_column(ROW, pa.array(np.arange(offset, offset + table.num_rows)))))
                targets.append((job.name, target, table.num_rows))
                starts.append(offset)
                offset += table.num_rows
        if not refs:
            return stats
        received: dict[int, list[pd.DataFrame]] = defaultdict(list)
        counts: dict[int, int] = defaultdict(int)
        for batch in pipeline(ray.data.from_arrow_refs(refs)).iter_batches(batch_format="pandas", batch_size=None):
            for k, rows in batch.groupby(np.searchsorted(starts, batch[ROW].to_numpy(), side="right") - 1):
                name, target, n = targets[k]
                received[k].append(rows)
                counts[k] += len(rows)
                if counts[k] < n:
                    continue
                frame = pd.concat(received.pop(k)).sort_values(ROW)
                if counts[k] > n or frame[ROW].duplicated().any():
                    raise ClusterError(f"{desc}: {name}/{target.name} came back with {counts[k]} rows for {n} "
                                       "(duplicates)")
                result = finish(frame.drop(columns=ROW).reset_index(drop=True))
                schemas.write(schema, result, target)
                stats[name]["rows_out"] += len(result)
                bar.update(n)
        missing = [f"{name}/{target.name}" for k, (name, target, n) in enumerate(targets) if counts[k] < n]
        if missing:
            raise ClusterError(f"{desc}: the Ray pipeline lost rows of {missing}")
    return stats
