"""The shared shard runner every long stage uses (exercised with describe's prompt backend)."""
import pandas as pd
import pyarrow.parquet as pq

from stylemap import shards
from stylemap.files import write_atomic
from stylemap.teacher.tasks import describe_by_prompt


def _sample_shards(tmp_path, n=10, size=4):
    df = pd.DataFrame({"image_id": [f"s/{i}" for i in range(n)], "prompt": [f"prompt {i}" for i in range(n - 1)] + ["  "]})
    for i in range(0, n, size):
        write_atomic(df.iloc[i : i + size], tmp_path / "in" / f"shard-{i // size:05d}.parquet")
    return shards.shard_files(tmp_path / "in")


def test_prompt_backend_records_provenance_and_empty_prompts():
    out = describe_by_prompt(pd.DataFrame({"image_id": ["a", "b"], "prompt": [" a cat ", None]}))
    assert out["description"].tolist() == ["a cat", ""]
    assert out["status"].tolist() == ["ok", "empty"]
    assert set(out["backend"]) == {"prompt"} and set(out["model"]) == {"generation-prompt"}


def test_map_shards_rechunks_and_resumes(tmp_path):
    files = _sample_shards(tmp_path)
    calls = []

    def fn(df):
        calls.append(len(df))
        return describe_by_prompt(df)

    stats = shards.map_shards(files, tmp_path / "out", fn, shard_size=3, params={"a": 1}, schema="describe")
    assert calls == [3, 3, 3, 1] and stats["rows_out"] == 10 and stats["shards_resumed"] == 0
    (tmp_path / "out" / "shard-00002.parquet").unlink()  # as if the run died while writing shard 2
    calls.clear()
    stats = shards.map_shards(files, tmp_path / "out", fn, shard_size=3, params={"a": 1}, schema="describe")
    assert calls == [3] and stats["shards_resumed"] == 3
    assert shards.read_dir(tmp_path / "out")["image_id"].tolist() == [f"s/{i}" for i in range(10)]
    calls.clear()
    shards.map_shards(files, tmp_path / "out", fn, shard_size=3, params={"a": 2}, schema="describe")  # params changed: redo all
    assert calls == [3, 3, 3, 1]


def test_iter_batches_streams_exact_sizes(tmp_path):
    files = _sample_shards(tmp_path, n=11, size=4)
    sizes = [t.num_rows for t in shards.iter_batches(files, 5, columns=["image_id"])]
    assert sizes == [5, 5, 1]
    assert pq.ParquetFile(files[0]).schema_arrow.names == ["image_id", "prompt"]


def test_code_fingerprint_follows_the_stages_code_deps_only(tmp_path, monkeypatch):
    from stylemap import params

    (tmp_path / "stages").mkdir()
    (tmp_path / "stylemap/templates").mkdir(parents=True)
    (tmp_path / "stages/x.py").write_text("a = 1\n")
    (tmp_path / "stylemap/templates/page.html").write_text("<p>")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/in.parquet").write_text("rows")
    monkeypatch.setattr(params, "REPO", tmp_path)
    monkeypatch.setattr(params, "stage_spec", lambda stage, root=".": {
        "deps": ["stages/x.py", "stylemap/templates", "data/in.parquet"]})
    first = shards.code_fingerprint("x")
    (tmp_path / "data/in.parquet").write_text("other rows")  # data identity is the input fingerprint's job
    assert shards.code_fingerprint("x") == first
    (tmp_path / "stylemap/templates/page.html").write_text("<p>changed")
    assert shards.code_fingerprint("x") != first


def test_prune_keeps_listed_names_and_markers(tmp_path):
    for name in ("demo", "horde", "_run.json", "horde.parquet", "demo.parquet"):
        (tmp_path / name).mkdir() if "." not in name else (tmp_path / name).write_text("x")
    shards.prune(tmp_path, {"demo"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_run.json", "demo", "demo.parquet"]
