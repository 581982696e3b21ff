"""DVC behaviour, end to end on a small demo corpus: repro, no-op rerun, partial rerun, push and pull.

Runs the real `dvc` in a throw-away git repository holding a copy of the project, with params shrunk
for speed (one crop per subject, keyword labels only). Minutes, so marked slow; CI runs it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stylemap.paths import REPO as ROOT
from stylemap.report.explorer import BUNDLE

pytestmark = pytest.mark.slow
VENV = ROOT / ".venv"
BUNDLE_DIR = BUNDLE.parent.relative_to(ROOT)


def sh(cmd: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def as_after_setup(checkout: Path) -> None:
    """What `bash .ci/setup` adds to a checkout beside the tracked files: the vLLM venv and the explorer's
    script bundle (built by npm + esbuild, not tracked)."""
    (checkout / ".venv-vllm").symlink_to(ROOT / ".venv-vllm")
    shutil.copytree(ROOT / BUNDLE_DIR, checkout / BUNDLE_DIR)


def copy_checkout(repo: Path) -> None:
    """The project's tracked and untracked (not ignored) files at `repo`, less committed results, as after setup."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and not rel.startswith(("metrics/", "plots/")) and rel != "dvc.lock":
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    as_after_setup(repo)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo copy of the project (tracked + untracked files, not ignored ones), fast params."""
    if not (ROOT / ".venv-vllm").exists():
        pytest.skip(".venv-vllm absent: run .ci/setup (the convert_llm stage needs it)")
    work = tmp_path_factory.mktemp("pipeline")
    repo = work / "main"
    copy_checkout(repo)
    (work / "shared").symlink_to(ROOT.parent / "shared") if (ROOT.parent / "shared").exists() else None
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["demo"]["crops_per_subject"] = 2
    params["label"]["run_llm"] = False
    params["label"]["model"] = "unused/keywords-only"  # so convert_llm has nothing to convert (tests/teacher: Gemma)
    params["balance"]["min_count"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(f"git init -q && dvc remote add -f -d local {work / 'remote'} && git add -A && git commit -qm init", repo)
    return repo


def test_repro_is_cached_and_partial(project):
    first = sh("dvc repro", project)
    assert {"demo", "repackage", "sample", "describe", "label", "balance", "embed", "train", "evaluate", "predict",
            "asked", "audit", "quantify", "map", "report"} <= ran(first)
    assert "up to date" in sh("dvc status", project)
    assert ran(sh("dvc repro", project)) == set()
    metrics = yaml.safe_load((project / "metrics" / "evaluate.json").read_text())
    assert 0 <= metrics["top1"] <= metrics["top3"] <= 1
    sh("git add -A && git commit -qm baseline", project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] / 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(sh("dvc repro", project)) == {"train", "evaluate", "predict", "asked", "audit", "quantify", "map",
                                             "report"}
    sh("git add -A && git commit -qm 'lr/2'", project)
    assert "metrics/evaluate.json" in sh("dvc metrics diff HEAD~1", project)  # ECE, at least, moves with lr
    sh("dvc plots diff HEAD~1 -o plots-diff", project)
    assert (project / "plots-diff" / "index.html").exists()


def test_push_then_pull_in_a_fresh_clone(project, tmp_path):
    sh("dvc repro && dvc push && git add -A && git commit -qm results --allow-empty", project)
    fresh = tmp_path / "main"
    sh(f"git clone -q {project} {fresh}", tmp_path)
    as_after_setup(fresh)
    sh("dvc pull", fresh)
    assert (fresh / "data" / "model").is_dir() and any((fresh / "data" / "embed").rglob("shard-*.parquet"))
    assert "up to date" in sh("dvc status", fresh)
    assert ran(sh("dvc repro", fresh)) == set()


def test_same_params_same_metrics(project):
    """Determinism: forcing every stage to run again reproduces metrics/*.json byte for byte."""
    sh("dvc repro", project)
    before = {f.name: f.read_bytes() for f in (project / "metrics").glob("*.json")}
    sh("dvc repro --force", project)
    after = {f.name: f.read_bytes() for f in (project / "metrics").glob("*.json")}
    assert before.keys() == after.keys() and len(before) >= 6
    assert [name for name in before if before[name] != after[name]] == []
