"""The Ray executor: a stage's work streamed through a Ray cluster, while the stage stays DVC's.

The stage process is the Ray *driver*. Its parts (`shards.Part`: a shard's rows of the input files) are read by
Ray Data read tasks pinned to the driver's node, so workers elsewhere never need `data/` (no shared filesystem),
and at most `shards_in_flight` parts' worth of rows are between their read and their return: the object store
holds a bounded window of the input, in blocks of `block_rows` rows, never the whole corpus. Rows stream back to
the driver, which hands each part to the runner once all its rows are back; so:

- a shard finished before a crash (even SIGKILL of the driver) is not redone on the rerun;
- a worker killed mid-run costs only its in-flight blocks: Ray Data restarts the actor and retries them, and
  the driver checks that every part comes back with each of its rows exactly once.

`RAY_ADDRESS` names the cluster (`ray start --head` / KubeRay); unset, `ray.init` starts one on this machine.
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from stylemap.entry import UserError
from stylemap.shards import Part

ROW = "_row"  # a row's position among the stage's pending rows: routes streamed rows back to their part
TEMP_DIR_MAX = 43  # Ray's longest socket path adds /session_<date>_<time>_<µs>_<pid>/sockets/plasma_store
LIGHT_CPUS = 0.25  # CPU cluster: CPUs per light task or actor (reading, request building, chat template)


class ClusterError(RuntimeError):
    """The Ray cluster cannot run what the params ask (e.g. more GPU replicas than it has GPUs)."""


class Stalled(UserError):
    """The Ray pipeline stopped: no block moved for the stage's timeout, its actors did not start in time, or an
    actor died more often than its retries allow. Finished shards are kept: a rerun resumes after them."""


def connect(temp_dir: str = "", spill_dir: str = ""):
    """The `ray` module, initialised: the cluster `RAY_ADDRESS` names, or a new local one whose session folder
    (`temp_dir`) and object-store spill folder (`spill_dir`) are where the params say ("" = Ray's defaults under
    /tmp/ray, on the root disk). A running cluster keeps the folders its `ray start` was given."""
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        folders = {} if address else {k: str(Path(v).absolute()) for k, v in
                                      (("_temp_dir", temp_dir), ("object_spilling_directory", spill_dir)) if v}
        if len(folders.get("_temp_dir", "")) > TEMP_DIR_MAX:
            raise UserError(f"ray.temp_dir {folders['_temp_dir']} is longer than {TEMP_DIR_MAX} characters: Ray's "
                            "sockets under it would pass the 107 bytes a Unix socket path may have; use a short "
                            "absolute path (e.g. /data/ray)")
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", **folders)
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


def task_cpus() -> dict:
    """Ray's default of one CPU per task on a GPU cluster; a fraction beside the engines of a CPU cluster."""
    return {} if cluster_gpus() else {"num_cpus": LIGHT_CPUS}


class Window:
    """At most `capacity` input rows between their read and the pipeline's end: a read task enters with its part's
    rows before it reads (alone, when the window is empty), the pipeline's last step lets rows out as it ends them
    (a Ray actor; Ray Data's own backpressure bounds queues by a share of the whole store, not by rows).
    Rows leave one by one, not as whole parts: Ray Data's first batching step holds rows until it has a batch, so
    a window that waited for whole parts could hold back the very rows that batch needs."""

    def __init__(self, capacity: int):
        import asyncio

        self.capacity, self.held, self.changed = capacity, 0, asyncio.Condition()

    async def enter(self, rows: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: not self.held or self.held + rows <= self.capacity)
            self.held += rows

    async def leave(self, rows: int) -> None:
        async with self.changed:
            self.held = max(self.held - rows, 0)
            self.changed.notify_all()


def _source(parts: list[tuple[Part, int]], starts: list[int], columns: list[str] | None, block_rows: int, window):
    """A Ray Data datasource with one read task per part: its rows, numbered from the part's start, in blocks."""
    import ray
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    def read(part: Part, n: int, start: int):
        ray.get(window.enter.remote(n))
        frame = part.read(columns)
        frame[ROW] = np.arange(start, start + len(frame))
        # a block of its own buffers: a sliced table would carry the whole part's bytes into the store
        return [pa.Table.from_pandas(frame.iloc[i:i + block_rows], preserve_index=False)
                for i in range(0, len(frame), block_rows)]

    class Parts(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            return [ReadTask(lambda part=part, n=n, start=start: read(part, n, start),
                             BlockMetadata(num_rows=n, size_bytes=None, input_files=None, exec_stats=None))
                    for (part, n), start in zip(parts, starts)]

    return Parts()


def stream(parts: list[tuple[Part, int]], columns: list[str] | None, pipeline: Callable, *, shards_in_flight: int,
           block_rows: int, desc: str) -> Iterator[tuple[int, pd.DataFrame]]:
    """(index in `parts`, its rows after `pipeline`, in input order) for each (part, row count) as its last row
    comes back; parts of no rows are not sent.
    `pipeline(dataset) -> dataset` does the work on the cluster and must keep the ROW column."""
    ray = connect()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    index = [k for k, (_, n) in enumerate(parts) if n]
    parts = [parts[k] for k in index]
    starts = list(np.cumsum([0] + [n for _, n in parts])[:-1])
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    window = ray.remote(num_cpus=0)(Window).options(scheduling_strategy=here).remote(
        shards_in_flight * max(n for _, n in parts))
    ds = ray.data.read_datasource(_source(parts, starts, columns, block_rows, window),
                                  concurrency=shards_in_flight, override_num_blocks=len(parts),
                                  num_cpus=0, ray_remote_args={"scheduling_strategy": here})  # I/O, not compute
    received: dict[int, list[pd.DataFrame]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)

    def done(rows: pd.DataFrame) -> pd.DataFrame:  # on the cluster, not in the driver: the driver's iterator
        ray.get(window.leave.remote(len(rows)))      # waits for the block after the one it yields
        return rows

    out = pipeline(ds).map_batches(done, batch_format="pandas", batch_size=None, num_cpus=0,
                                   scheduling_strategy=here)
    for batch in _watched(out.iter_batches(batch_format="pandas", batch_size=None), desc):
        for k, rows in batch.groupby(np.searchsorted(starts, batch[ROW].to_numpy(), side="right") - 1):
            part, n = parts[k]
            received[k].append(rows)
            counts[k] += len(rows)
            if counts[k] < n:
                continue
            frame = pd.concat(received.pop(k)).sort_values(ROW)
            if counts[k] > n or frame[ROW].duplicated().any():
                raise ClusterError(f"{desc}: {part.target or k} came back with {counts[k]} rows for {n} (duplicates)")
            yield index[k], frame.drop(columns=ROW).reset_index(drop=True)
    missing = [str(part.target or k) for k, (part, n) in enumerate(parts) if counts[k] < n]
    if missing:
        raise ClusterError(f"{desc}: the Ray pipeline lost rows of {missing}")


def _watched(batches: Iterator[pd.DataFrame], desc: str) -> Iterator[pd.DataFrame]:
    """`batches`, with Ray's watchdog errors turned into one line (`Stalled`)."""
    import ray
    from ray.data.exceptions import ExecutionTimeoutError

    try:
        yield from batches
    except (ExecutionTimeoutError, ray.exceptions.GetTimeoutError, ray.exceptions.ActorDiedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise Stalled(f"{desc}: the Ray pipeline stopped ({type(err).__name__}: {first}); finished shards are "
                      "kept, rerun to resume") from err
