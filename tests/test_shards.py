"""Shards and the one runner every heavy stage uses (exercised with describe's prompt describer)."""
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stylemap import runner, shards
from stylemap.files import write_atomic
from stylemap.runner import Executor, Work
from stylemap.teacher.describe import by_prompt

LOCAL = Executor("local")


def _sample_shards(tmp_path, n=10, size=4):
    df = pd.DataFrame({"image_id": [f"s/{i}" for i in range(n)], "prompt": [f"prompt {i}" for i in range(n - 1)] + ["  "]})
    for i in range(0, n, size):
        write_atomic(df.iloc[i : i + size], tmp_path / "in" / f"shard-{i // size:05d}.parquet")
    return shards.shard_files(tmp_path / "in")


def test_prompt_describer_records_provenance_and_empty_prompts():
    out = by_prompt(pd.DataFrame({"image_id": ["a", "b"], "prompt": [" a cat ", None]}))
    assert out["description"].tolist() == ["a cat", ""]
    assert out["status"].tolist() == ["ok", "empty"]
    assert set(out["backend"]) == {"prompt"} and set(out["model"]) == {"generation-prompt"}


def _counting_work(calls: list) -> Work:
    def finish(rows):
        calls.append(len(rows))
        return by_prompt(rows)
    return Work("describe", ["image_id", "prompt"], finish, schema="describe")


def test_run_rechunks_and_resumes(tmp_path):
    files = _sample_shards(tmp_path)
    calls = []
    job = shards.Job("s", files, tmp_path / "out", {"a": 1})
    stats = runner.run(_counting_work(calls), [job], LOCAL, shard_size=3)["s"]
    assert calls == [3, 3, 3, 1] and stats == {"shards": 4, "shards_resumed": 0, "rows_in": 10, "rows_out": 10}
    (tmp_path / "out" / "shard-00002.parquet").unlink()  # as if the run died while writing shard 2
    calls.clear()
    stats = runner.run(_counting_work(calls), [job], LOCAL, shard_size=3)["s"]
    assert calls == [3] and stats["shards_resumed"] == 3 and stats["rows_out"] == 10
    assert shards.read_dir(tmp_path / "out")["image_id"].tolist() == [f"s/{i}" for i in range(10)]
    calls.clear()
    runner.run(_counting_work(calls), [shards.Job("s", files, tmp_path / "out", {"a": 2})], LOCAL, shard_size=3)
    assert calls == [3, 3, 3, 1]  # params changed: redo all


def test_a_part_reads_its_rows_across_file_and_row_group_boundaries(tmp_path):
    files = _sample_shards(tmp_path, n=11, size=4)
    parts = shards.parts(files, 5)
    assert [(p.start, p.stop) for p in parts] == [(0, 5), (5, 10), (10, 11)]
    assert parts[1].read(["image_id"])["image_id"].tolist() == [f"s/{i}" for i in range(5, 10)]
    assert list(parts[2].read().columns) == ["image_id", "prompt"] and parts[2].count() == 1
    wide = pd.DataFrame({"image_id": [f"w/{i}" for i in range(10)]})
    pq.write_table(pa.Table.from_pandas(wide), tmp_path / "rg.parquet", row_group_size=3)
    part = shards.parts([tmp_path / "rg.parquet"], 4)[1]
    assert part.read()["image_id"].tolist() == ["w/4", "w/5", "w/6", "w/7"]


def test_expand_is_applied_once_and_an_emptied_part_is_an_empty_shard(tmp_path):
    files = _sample_shards(tmp_path, n=6, size=3)
    keep = lambda rows: rows[rows["image_id"].isin(["s/1", "s/2"])]  # noqa: E731 - only part 0 keeps rows
    calls = []
    job = shards.Job("s", files, tmp_path / "out", {}, expand=keep)
    stats = runner.run(_counting_work(calls), [job], LOCAL, shard_size=3)["s"]
    assert calls == [2] and stats["rows_out"] == 2
    assert [pq.ParquetFile(f).metadata.num_rows for f in shards.shard_files(tmp_path / "out")] == [2, 0]


def test_iter_batches_streams_exact_sizes(tmp_path):
    files = _sample_shards(tmp_path, n=11, size=4)
    sizes = [t.num_rows for t in shards.iter_batches(files, 5, columns=["image_id"])]
    assert sizes == [5, 5, 1]
    assert pq.ParquetFile(files[0]).schema_arrow.names == ["image_id", "prompt"]


def test_prune_keeps_listed_names_and_markers(tmp_path):
    for name in ("demo", "horde", "_run.json", "horde.parquet", "demo.parquet"):
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("x")
    shards.prune(tmp_path, {"demo"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_run.json", "demo", "demo.parquet"]


@pytest.mark.parametrize("loader_workers", [0, 2])
def test_prepare_runs_batch_by_batch_ahead_of_the_inference(tmp_path, loader_workers):
    """Local inference gets `rows_per_call` rows a call, each prepared first (in DataLoader workers or here)."""
    from contextlib import contextmanager

    class Doubling:
        rows_per_call = 2

        @contextmanager
        def local(self):
            yield lambda rows: rows.assign(n=rows["n"] * 2, calls=len(rows))

    work = Work("w", None, lambda rows: rows, prepare=lambda rows: rows.assign(n=rows["image_id"].str.len()),
                inference=Doubling())
    out = runner.apply(work, pd.DataFrame({"image_id": ["a", "bb", "ccc", "dddd", "e"]}))
    assert out["n"].tolist() == [2, 4, 6, 8, 2] and out["calls"].tolist() == [2, 2, 2, 2, 1]
    files = _sample_shards(tmp_path, n=5, size=5)
    [(_, frame)] = runner.stream(work, [(shards.parts(files, 5)[0], 5)], Executor("local", loader_workers=loader_workers))
    assert frame["n"].tolist() == [6, 6, 6, 6, 6] and frame["calls"].tolist() == [2, 2, 2, 2, 1]
