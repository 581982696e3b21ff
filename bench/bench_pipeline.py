"""Pipeline-level benchmarks, each printed as a ratio measured in this one run.

1. `dvc repro` after changing one train param ÷ the full run (goal <= 0.1): DVC's caching at work.
2. peak RSS of `sample` on N and on 10·N images (goal <= 1.2x): sample streams parts into shards.

Runs in a throw-away copy of the project (git repo + DVC), CPU profile params. Usage:
    .venv/bin/python bench/bench_pipeline.py [--crops 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fixtures import write_params  # noqa: E402

ENV = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}


def sh(cmd: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, shell=True, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def copy_project(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file() and rel != "dvc.lock":
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    (dest / ".venv-vllm").symlink_to(ROOT / ".venv-vllm")
    sh("git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm bench", dest)
    return dest


def sample_peak_rss_kb(repo: Path, n_crops: int) -> int:
    """Build a demo corpus of 60·n_crops images and sample all of it; returns the sample process's peak RSS."""
    write_params(repo, {"demo.crops_per_subject": n_crops, "sample.n": 10**6})
    sh("python -m stages.demo", repo)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it could report this bench's own peak.
    code = ("import runpy; runpy.run_module('stages.sample', run_name='__main__'); "
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')); "
            "print(hwm.split()[1], file=open('rss.txt', 'w'))")
    sh(f"python -c \"{code}\" > /dev/null", repo)
    return int((repo / "rss.txt").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=2, help="demo crops per subject for N (10x for 10N)")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_project(Path(tmp) / "main")
        (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared") if (ROOT.parent / "shared").exists() else None
        full = sh("dvc repro", repo)
        write_params(repo, {"train.lr": 0.025})  # the repository's params.yaml, one train param changed
        partial = sh("dvc repro", repo)
        print(f"dvc repro: full {full:.1f}s, after one train param {partial:.1f}s, ratio {partial / full:.3f} (goal <= 0.1)")
        small = sample_peak_rss_kb(repo, args.crops)
        big = sample_peak_rss_kb(repo, 10 * args.crops)
        n_small, n_big = (60 * c + 4 for c in (args.crops, 10 * args.crops))  # 10 subjects x 6 styles + 4 bad
        print(f"sample peak RSS: {n_small} images {small / 1024:.0f} MiB, {n_big} images {big / 1024:.0f} MiB, "
              f"ratio {big / small:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
