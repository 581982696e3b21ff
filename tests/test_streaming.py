"""The Ray executor streams: a stage whose inputs are four times the object store finishes, spills nothing and
stays inside the store, on a local cluster. The window holds at most `ray.shards_in_flight` parts' worth of input
rows between their read and the pipeline's end (its own test below); the store holds more than the window, since
Ray Data's operators keep queues of their own, budgeted by a share of the store: measured 72 MiB on a 96 MiB store
for a window of 16 MiB, 80-88 MiB with 128 or 768 MiB of inputs (flat in the inputs, so streamed)."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from stylemap import runner, shards
from stylemap.files import write_atomic
from stylemap.runner import Executor, Work

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts a Ray cluster

MiB = 1 << 20
ROW_BYTES, SHARD_ROWS, SHARDS = 2 * MiB, 4, 48  # 384 MiB of inputs
STORE = 96 * MiB  # the object store's cap: a quarter of the inputs
IN_FLIGHT = 2


def _store_stats():
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    return get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address)).store_stats


def test_a_stage_streams_through_an_object_store_smaller_than_its_inputs(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(SHARDS // 4):  # input files of 4 shards each: parts cross file boundaries' row ranges
        rows = range(i * 4 * SHARD_ROWS, (i + 1) * 4 * SHARD_ROWS)
        write_atomic(pd.DataFrame({"image_id": [f"s/{k}" for k in rows],
                                   "image_bytes": [rng.bytes(ROW_BYTES) for _ in rows]}),
                     tmp_path / f"in/shard-{i:05d}.parquet")
    total = sum(f.stat().st_size for f in shards.shard_files(tmp_path / "in"))
    work = Work("stream", ["image_id", "image_bytes"], lambda rows: rows, schema=None,
                prepare=lambda rows: pd.DataFrame({"image_id": rows["image_id"],
                                                   "n": rows["image_bytes"].map(len).astype("int64")}))
    parts = [(part, part.count()) for part in shards.parts(shards.shard_files(tmp_path / "in"), SHARD_ROWS)]
    ray.init(num_cpus=2, object_store_memory=STORE, include_dashboard=False)
    peak, done = [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _store_stats().object_store_bytes_used)
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = list(runner.stream(work, parts, Executor("ray", shards_in_flight=IN_FLIGHT, block_rows=2)))
        done.set()
        watcher.join()
        spilled = _store_stats().spilled_bytes_total
    finally:
        done.set()
        ray.shutdown()
    rows = pd.concat([frame for _, frame in out], ignore_index=True)
    assert rows["image_id"].tolist() == [f"s/{k}" for k in range(SHARDS * SHARD_ROWS)]  # every row once, in order
    assert (rows["n"] == ROW_BYTES).all()
    print(f"inputs {total / MiB:.0f} MiB, store cap {STORE / MiB:.0f} MiB, window {IN_FLIGHT * SHARD_ROWS * ROW_BYTES / MiB:.0f} MiB, "
          f"peak store use {peak[0] / MiB:.1f} MiB, spilled {spilled / MiB:.1f} MiB")
    assert total > 3 * STORE and spilled == 0 and 0 < peak[0] < STORE


def test_the_window_admits_a_part_only_while_its_rows_fit():
    """The window's rule, without a cluster: a part enters alone into an empty window, or beside others while
    their rows fit; rows leaving let the waiting part in."""
    import asyncio

    from stylemap.cluster import Window

    async def scenario():
        window = Window(capacity=8)
        await window.enter(6)
        waiting = asyncio.create_task(window.enter(4))  # 6 + 4 > 8: waits
        await asyncio.sleep(0.05)
        assert not waiting.done() and window.held == 6
        await window.leave(2)  # 4 + 4 fits
        await asyncio.wait_for(waiting, 1)
        assert window.held == 8
        await window.leave(8)
        await window.enter(20)  # larger than the window, alone: admitted
        return window.held

    assert asyncio.run(scenario()) == 20


class _Length:
    def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(n=rows["image_id"].str.len())


class _Batched:
    """An inference that Ray Data runs in batches of 8 rows on one actor, as the encoders run: its batching step
    holds rows until it has 8."""
    batch_size = 8

    def on_ray(self, ds):
        return ds.map_batches(_Length, batch_format="pandas", batch_size=self.batch_size, num_cpus=0.25,
                              compute=ray.data.ActorPoolStrategy(size=1))


def test_parts_smaller_than_a_batch_do_not_stall_the_window(tmp_path):
    """Two tails of 2 and 1 rows in flight together hold 3 rows, fewer than a batch: the window must still let
    the next part in (a window of whole parts waited for them, and they for a batch, forever)."""
    parts = []
    for name, n in (("a", 34), ("b", 1), ("c", 16)):  # parts of 16, 16, 2 | 1 | 16 rows
        write_atomic(pd.DataFrame({"image_id": [f"{name}/{k}" for k in range(n)]}), tmp_path / f"{name}/shard-00000.parquet")
        parts += [(p, p.count()) for p in shards.parts([tmp_path / f"{name}/shard-00000.parquet"], 16)]
    assert [n for _, n in parts] == [16, 16, 2, 1, 16]
    work = Work("tails", ["image_id"], lambda rows: rows, inference=_Batched())
    ray.init(num_cpus=2, include_dashboard=False)
    out: list = []
    try:
        worker = threading.Thread(target=lambda: out.extend(
            runner.stream(work, parts, Executor("ray", shards_in_flight=2, block_rows=4))), daemon=True)
        worker.start()
        worker.join(timeout=180)
        assert not worker.is_alive(), "the window stalled"
    finally:
        ray.shutdown()
    assert [len(frame) for _, frame in out] == [16, 16, 2, 1, 16]
    assert pd.concat([f for _, f in out])["image_id"].tolist() == [f"{name}/{k}" for name, n in (("a", 34), ("b", 1), ("c", 16)) for k in range(n)]
