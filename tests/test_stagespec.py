"""dvc.yaml's word on a stage: the params it may read, the code it runs, and the validate command."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from stylemap import stagespec
from stylemap.paths import REPO
from stylemap.stagespec import UndeclaredParam, for_stage
from tests.support.fixtures import write_params


def test_a_stage_reads_only_what_dvc_yaml_declares(tmp_path):
    write_params(tmp_path)
    p = for_stage("embed", tmp_path)
    assert p.embed.augment.rotate_limit == 15 and p.train_source == "demo"
    with pytest.raises(UndeclaredParam, match="stage 'embed' reads param 'seed'"):
        p.seed
    (tmp_path / "dvc.yaml").write_text("stages:\n  x:\n    cmd: true\n    params: [embed.backend]\n")
    q = for_stage("x", tmp_path)
    assert q.embed.backend == "efficientnet_lite"
    with pytest.raises(UndeclaredParam, match="reads param 'embed.arch'"):
        q.embed.arch


def test_validate_command_lists_planned_stages_for_production():
    out = subprocess.run([sys.executable, "-m", "stylemap.stagespec", "--profile", "production"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "valid (production profile)" in out
    planned = [line.split()[0] for line in out.splitlines()[1:]]
    assert planned == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert "python -m stages.embed" in out


def test_code_fingerprint_follows_the_stages_code_deps_only(tmp_path, monkeypatch):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stylemap/templates").mkdir(parents=True)
    (tmp_path / "stages/x.py").write_text("a = 1\n")
    (tmp_path / "stylemap/templates/page.html").write_text("<p>")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/in.parquet").write_text("rows")
    monkeypatch.setattr(stagespec, "REPO", tmp_path)
    monkeypatch.setattr(stagespec, "stage_spec", lambda stage, root=".": {
        "deps": ["stages/x.py", "stylemap/templates", "data/in.parquet"]})
    first = stagespec.code_fingerprint("x")
    (tmp_path / "data/in.parquet").write_text("other rows")  # data identity is the input fingerprint's job
    assert stagespec.code_fingerprint("x") == first
    (tmp_path / "stylemap/templates/page.html").write_text("<p>changed")
    assert stagespec.code_fingerprint("x") != first
