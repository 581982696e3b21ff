"""What dvc.yaml says about a stage: the params it may read, and the code it runs.

`for_stage(name, root)` is what stages call: the project's params (profile.load) restricted to the keys that
stage lists under `params:` in dvc.yaml. Reading any other key raises `UndeclaredParam`, so a stage cannot
depend on a param DVC does not track for it (the per-stage integration tests run every stage).
`code_fingerprint(name, root)` hashes the code deps the same entry lists, so persisted shards made by other
code are never resumed.

`python -m stylemap.stagespec [--profile production]` validates a profile without a GPU and prints the
stages `dvc repro` would run.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import yaml

from stylemap.params import Params
from stylemap.paths import REPO
from stylemap.profile import ParamsError, load


class UndeclaredParam(AttributeError):
    """A stage read a param that its dvc.yaml entry does not list (DVC would not re-run it on a change)."""


def dvc_stages(root: str | Path = ".") -> dict:
    """The `stages` of dvc.yaml: the project's, else the repository's (a test project has none of its own)."""
    path = Path(root) / "dvc.yaml"
    return yaml.safe_load((path if path.exists() else REPO / "dvc.yaml").read_text())["stages"]


def stage_spec(stage: str, root: str | Path = ".") -> dict:
    """A stage's entry in dvc.yaml."""
    stages = dvc_stages(root)
    if stage not in stages:
        raise KeyError(f"dvc.yaml has no stage {stage!r}")
    return stages[stage]


def declared_tree(declared: list[str]) -> dict:
    """["seed", "embed.backend"] -> {"seed": True, "embed": {"backend": True}} (True = the whole subtree)."""
    tree: dict = {}
    for key in declared:
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
            if node is True:
                break
        else:
            node[last] = True
    return tree


class Scoped:
    """Read-only view of params that lets a stage read only what dvc.yaml declares for it."""

    def __init__(self, value: Any, allowed: dict, stage: str, prefix: str = ""):
        self._value, self._allowed, self._stage, self._prefix = value, allowed, stage, prefix

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._allowed:
            raise UndeclaredParam(f"stage {self._stage!r} reads param '{self._prefix}{name}', which its dvc.yaml "
                                  "entry does not list under `params:`")
        value = getattr(self._value, name)
        sub = self._allowed[name]
        return value if sub is True else Scoped(value, sub, self._stage, f"{self._prefix}{name}.")


def for_stage(stage: str, root: str | Path = ".") -> Params:
    """The project's params as `stage` may read them (see module docstring)."""
    declared = [k if isinstance(k, str) else next(iter(k)) for k in stage_spec(stage, root).get("params", [])]
    return Scoped(load(root), declared_tree(declared), stage)  # type: ignore[return-value]


def code_fingerprint(stage: str, root: str | Path = ".") -> str:
    """Hash of the code a stage runs (its dvc.yaml deps under stages/ and stylemap/): persisted shards made by
    other code are not resumed, because DVC re-runs the stage on a code change and trusts what it finds."""
    h = hashlib.sha256()
    for dep in sorted(stage_spec(stage, root).get("deps", [])):
        if dep.split("/")[0] in ("stages", "stylemap"):
            target = REPO / dep
            for f in sorted(target.rglob("*")) if target.is_dir() else [target]:
                if f.is_file() and "__pycache__" not in f.parts:
                    h.update(f"{f.relative_to(REPO)}\n".encode() + f.read_bytes())
    return h.hexdigest()


def planned_stages(root: str | Path = ".") -> list[tuple[str, str]]:
    """(stage name, command) in file order: what `dvc repro` would run on a clean cache."""
    return [(name, spec["cmd"]) for name, spec in dvc_stages(root).items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate a profile (no GPU needed) and list the planned stages.")
    parser.add_argument("--root", default=".", help="project directory holding params.yaml")
    parser.add_argument("--profile", help="validate this profile instead of the one params.yaml names")
    args = parser.parse_args(argv)
    try:
        params = load(args.root, args.profile)
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{Path(args.root) / 'params.yaml'}: valid ({params.profile} profile)")
    for name, cmd in planned_stages(args.root):
        print(f"  {name:12s} {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
