"""The Ray engine for embed on a local Ray cluster (2 CPUs): the same rows as the local engine, and a worker
killed mid-run retried with no row lost or duplicated. (The driver killed mid-run: tests/stages/test_crash_resume.py;
label through ray.data.llm: tests/teacher/test_gemma.py.)"""
from __future__ import annotations

import importlib
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stylemap import shards
from tests.support.fixtures import make_project, save_random_clip

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts a Ray cluster
embed = importlib.import_module("stages.embed")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    checkpoint = save_random_clip(tmp_path_factory.mktemp("clip") / "vit-s-32.pt")
    return {"embed.backend": "open_clip", "embed.arch": "ViT-S-32", "embed.pretrained": str(checkpoint)}


def _assert_same_rows(a_root, b_root) -> int:
    rows = 0
    for part in ("demo", "augmented"):
        a, b = (shards.read_dir(root / "data/embed" / part) for root in (a_root, b_root))
        assert a.drop(columns="embedding").equals(b.drop(columns="embedding")), part
        for x, y in zip(a["embedding"], b["embedding"]):
            assert (x is None) == (y is None)
            if x is not None:  # batches differ between engines: float sums may differ in the last bits
                np.testing.assert_allclose(x, y, atol=1e-5)
        rows += len(a)
    return rows


@pytest.mark.parametrize("backend", ["style_stats", "open_clip"])
def test_embed_on_ray_gives_the_local_rows(cluster, clip, tmp_path, backend):
    overrides = clip if backend == "open_clip" else {}
    for engine in ("local", "ray"):
        make_project(tmp_path / engine, per_style=3, overrides={**overrides, "embed.executor": engine, "embed.replicas": 2})
    metrics = [embed.main(tmp_path / engine) for engine in ("local", "ray")]
    assert metrics[0] == metrics[1] and metrics[1]["rejected.undecodable"] == 1
    assert _assert_same_rows(tmp_path / "local", tmp_path / "ray") == metrics[1]["in"]



def test_the_driver_keeps_its_encoder_copy_off_the_gpu_when_actors_encode(cluster, clip, tmp_path, monkeypatch):
    """On Ray the driver needs the encoder's preprocessing, dim and provenance only, so it loads it on the CPU:
    told here that CUDA is available (in the driver's process alone), it would otherwise put the ViT on cuda:0,
    which this machine lacks, and fail; the actors (num_gpus 0) encode on their CPUs."""
    import torch

    make_project(tmp_path, per_style=2, overrides={**clip, "embed.executor": "ray", "embed.replicas": 1})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    m = embed.main(tmp_path)
    assert m["backend"] == "open_clip" and m["rejected"] == m["rejected.undecodable"] == 1 and m["kept"] > 0

def _encoder_actor_pids() -> set[int]:
    """Ray titles an actor's process `ray::<actor class>`: the map workers holding the encoder."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if title.startswith(b"ray::") and b"Encode" in title:
            pids.add(int(proc.name))
    return pids


def test_a_killed_encoder_actor_is_retried_with_nothing_lost(cluster, clip, tmp_path):
    """SIGKILL the actor holding the encoder once the first shard is written: Ray Data starts another and
    retries the lost blocks; every shard still comes back with each of its rows once, equal to the local run."""
    for engine in ("local", "ray"):
        make_project(tmp_path / engine, per_style=20, overrides={**clip, "embed.executor": engine, "embed.replicas": 1,
                                                                  "embed.shard_size": 8, "embed.batch_size": 4})
    failure: list[BaseException] = []
    run = threading.Thread(target=lambda: _catch(failure, embed.main, tmp_path / "ray"))
    run.start()
    out = tmp_path / "ray/data/embed/demo"
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        pids = _encoder_actor_pids()
        if pids and shards.shard_files(out):
            killed = pids.pop()
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    run.join(600)
    assert not failure, failure
    assert killed is not None, "the run ended before an encoder actor could be killed"
    written = len(shards.shard_files(out))
    assert 1 <= written and written == len(shards.shard_files(tmp_path / "ray/data/embed/demo"))
    embed.main(tmp_path / "local")
    rows = _assert_same_rows(tmp_path / "local", tmp_path / "ray")
    print(f"killed encoder actor pid {killed} mid-run; {rows} rows, equal to the local engine's")


def _catch(failure: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - reported by the test thread
        failure.append(err)


def test_predict_on_ray_writes_the_local_predictions(cluster, tmp_path):
    """The probe's maths on Ray tasks, screening and de-duplication here: the same file, row for row."""
    from stylemap.model.prevalence import ProbeSpec, predict_platform
    from stylemap.runner import Executor

    make_project(tmp_path, per_style=3, overrides={"embed.backend": "style_stats"})  # 64-d, as W below
    embed.main(tmp_path)
    files = shards.shard_files(tmp_path / "data/embed/demo") + shards.shard_files(tmp_path / "data/embed/demo")
    rng = np.random.default_rng(0)
    W, b, classes = rng.normal(size=(4, 64)).astype(np.float32), np.zeros(4, np.float32), list("abcd")
    out = {engine: tmp_path / f"{engine}.parquet" for engine in ("local", "ray")}
    rejects = {e: predict_platform(files, ProbeSpec(W, b, 2.0), classes, path, "demo", Executor(e, block_rows=5))
               for e, path in out.items()}
    assert rejects["ray"].equals(rejects["local"])
    assert rejects["ray"]["reason"].value_counts().to_dict() == {"duplicate": 12, "embed_failed": 2}
    local, remote = (pd.read_parquet(path) for path in out.values())
    assert len(remote) == 12 and remote.equals(local)
