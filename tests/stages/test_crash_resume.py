"""SIGKILL a long stage mid-run, run it again: finished shards are kept, the result equals an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stylemap import shards
from stylemap.paths import REPO as ROOT
from tests.support.fixtures import make_project


def _project(root: Path, engine: str = "local"):
    make_project(root, per_style=30, n_augmented=8, corrupt=True,  # 181 images -> 12 shards of 16
                 overrides={"embed.executor": engine, "embed.backend": "style_stats"})  # resuming, not the encoder
    return root


@pytest.fixture
def ray_address():
    """A local Ray cluster (2 CPUs) that the stage joins as a driver through RAY_ADDRESS, as on a real cluster."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _embed(root: Path, address: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": address}
    return subprocess.Popen([sys.executable, "-m", "stages.embed"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _shards(root: Path) -> dict[str, int]:
    return {str(f.relative_to(root)): f.stat().st_mtime_ns for f in shards.shard_files(root / "data/embed")}


def test_embed_killed_mid_run_resumes_without_redoing_shards(tmp_path):
    _killed_and_resumed(tmp_path, "local")


@pytest.mark.slow  # a Ray cluster
def test_embed_on_ray_driver_killed_mid_run_resumes_by_shard(tmp_path, ray_address):
    """SIGKILL the Ray driver (the stage): the shards it wrote survive, the rerun does only the rest."""
    _killed_and_resumed(tmp_path, "ray", ray_address)


def _killed_and_resumed(tmp_path: Path, engine: str, address: str = "") -> None:
    crashed, clean = _project(tmp_path / "crashed", engine), _project(tmp_path / "clean")
    proc = _embed(crashed, address)
    deadline = time.monotonic() + 300
    while len(_shards(crashed)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _shards(crashed)
    assert 3 <= len(finished) < 12, f"kill landed outside the run: {len(finished)} shards done"

    assert _embed(crashed, address).wait() == 0
    after = _shards(crashed)
    assert {k: after[k] for k in finished} == finished  # the finished shards were not rewritten
    assert len(after) > len(finished)
    print(f"embed resume ({engine} engine): {len(finished)} shards survived the kill, {len(after) - len(finished)} computed after it")

    assert _embed(clean).wait() == 0
    assert after.keys() == _shards(clean).keys()
    for rel in after:
        a, b = (shards.read_dir((r / rel).parent) for r in (crashed, clean))
        assert a.equals(b), rel
    assert (crashed / "metrics/embed.json").read_text() == (clean / "metrics/embed.json").read_text()
