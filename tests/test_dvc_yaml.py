"""dvc.yaml is right by construction: code deps follow imports, params follow what each stage reads, outs
are the paths module's, and no params key is one DVC's run cache silently ignores."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stylemap import paths
from stylemap.params import GLOBAL_KEYS, Params
from stylemap.paths import REPO
from tests.code_deps import code_deps

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
STAGE_FILES = {p.stem: p for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
PARAMS_FILES = [REPO / "params.yaml", *sorted((REPO / "stylemap/profiles").glob("*.yaml"))]


def _entries(items) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else i for i in items or []]


def _covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def test_every_stage_module_is_a_dvc_stage_and_back():
    assert set(DVC) == set(STAGE_FILES)
    for name, spec in DVC.items():
        assert spec["cmd"].endswith(f"python -m stages.{name}"), spec["cmd"]


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_code_a_stage_runs_is_in_its_deps(stage):
    deps = DVC[stage].get("deps", [])
    missing = sorted(str(p) for p in code_deps(STAGE_FILES[stage]) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} misses deps {missing}"


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_data_deps_come_before_code_deps_and_no_code_dep_is_stale(stage):
    """A reader sees a stage's data flow first; a code dep is a file the stage still runs (or package data)."""
    deps = DVC[stage].get("deps", [])
    code = [d.split("/")[0] in ("stages", "stylemap") for d in deps]
    assert code == sorted(code), f"{stage}: data deps first, then code deps: {deps}"
    used = {str(p) for p in code_deps(STAGE_FILES[stage])}
    stale = [d for d, c in zip(deps, code) if c and d.endswith(".py") and d not in used]
    assert not stale, f"dvc.yaml stage {stage!r} lists code it no longer imports: {stale}"


@pytest.mark.parametrize("stage", sorted(STAGE_FILES))
def test_data_files_named_by_a_stages_params_are_deps(stage):
    """A params value naming a repository file (taxonomy, few-shot prompt) is a dep of the stages reading it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    deps = DVC[stage].get("deps", [])
    for key in _entries(DVC[stage].get("params")):
        node = raw
        for part in key.split("."):
            node = node[part]
        values = node.values() if isinstance(node, dict) else [node]
        for value in values:
            if isinstance(value, str) and "/" in value and (REPO / value).is_file() and not value.startswith("data/"):
                assert _covered(Path(value), deps), f"{stage}: params file {value} is not in deps"


def test_declared_params_exist_and_sections_belong_to_their_stage():
    known = set(Params.model_fields)
    for stage, spec in DVC.items():
        for key in _entries(spec.get("params")):
            top = key.split(".")[0]
            assert top in known, f"{stage}: unknown param {key}"
            # a section belongs to its own stage; another stage may name one key of it (convert_llm: label.model)
            assert top in GLOBAL_KEYS or top == stage or "." in key, f"{stage} declares {key}: a section belongs to its own stage"


def test_every_section_is_read_by_its_stage():
    for section in set(Params.model_fields) - set(GLOBAL_KEYS):
        assert section in DVC and section in _entries(DVC[section].get("params")), f"section {section} has no stage"


def test_outs_are_the_paths_modules():
    declared = {v for k, v in vars(paths).items() if k.isupper() and isinstance(v, str)}
    for stage, spec in DVC.items():
        for kind in ("outs", "metrics", "plots"):
            for out in _entries(spec.get(kind)):
                assert out in declared or out.startswith(f"{paths.METRICS}/") or out.startswith(f"{paths.DVCLIVE}/") \
                    or out.startswith(f"{paths.PLOTS}/"), f"{stage}: out {out} is not defined in stylemap/paths.py"
                if out.startswith(f"{paths.METRICS}/"):
                    assert out == f"{paths.METRICS}/{stage}.json", f"{stage} writes metrics to {out}"


def _keys(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{prefix}{key}", key
            yield from _keys(value, f"{prefix}{key}.")


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_no_param_is_named_size_or_nfiles(params_file):
    """DVC's run cache drops nested keys named size/nfiles (dvc/stage/cache.py), so a change to one would
    restore a stale output."""
    bad = [path for path, key in _keys(yaml.safe_load(params_file.read_text())) if key in ("size", "nfiles")]
    assert not bad, f"{params_file.name}: rename {bad}"
