"""A Ray cluster the pipeline starts puts its session and its object-store spill where `ray.temp_dir` and
`ray.spill_dir` say, not on the root disk's /tmp/ray; a temp_dir too long for Ray's sockets is one clear line."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from stylemap import cluster
from stylemap.paths import REPO

pytestmark = pytest.mark.slow  # starts a Ray cluster

SPILL = """
import sys, pathlib, numpy as np
sys.path.insert(0, {repo!r})
from stylemap import cluster
ray = cluster.connect({temp!r}, "spill")
held = [ray.put(np.ones(40_000_000, dtype=np.uint8)) for _ in range(4)]  # 160 MB through a 100 MB store
print(sum(int(ray.get(ref)[0]) for ref in held))
print(sum(f.stat().st_size for f in pathlib.Path("spill").rglob("*") if f.is_file()))  # Ray clears it at exit
"""


def test_a_started_cluster_spills_to_spill_dir_and_keeps_its_session_in_temp_dir(tmp_path):
    temp = f"/tmp/sm-{os.getpid()}"  # short: Ray's socket paths under it must stay within 107 bytes
    env = {**os.environ, "RAY_DEFAULT_OBJECT_STORE_MAX_MEMORY_BYTES": str(100 * 2**20),
           "RAY_local_fs_capacity_threshold": "1.0"}  # spill even on a nearly full test disk (Ray stops at 95 %)
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run([sys.executable, "-c", SPILL.format(repo=str(REPO), temp=temp)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        sessions = [p.name for p in os.scandir(temp)]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    read, spilled = map(int, done.stdout.split()[-2:])
    assert read == 4 and spilled >= 40_000_000  # spilled where the params say
    assert any(name.startswith("session_") for name in sessions)


def test_a_temp_dir_too_long_for_rays_sockets_is_refused_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray

    ray.shutdown()  # connect checks the folders of a cluster it starts: none may be running in this process
    with pytest.raises(cluster.UserError, match=r"ray.temp_dir .* is longer than 43 characters"):
        cluster.connect(str(tmp_path / "a-path-that-is-long-enough-to-break-sockets"), "")
    assert not ray.is_initialized()
