"""The layout rules: stages are thin and independent, bench/ uses only the library."""
from __future__ import annotations

import ast

import pytest

from stylemap.params import REPO
from tests.code_deps import imported_modules

STAGES = sorted((REPO / "stages").glob("*.py"))


@pytest.mark.parametrize("stage", STAGES, ids=lambda p: p.stem)
def test_a_stage_never_imports_another_stage(stage):
    others = {f"stages.{p.stem}" for p in STAGES} - {f"stages.{stage.stem}"}
    assert not (imported_modules(stage) & (others | {"stages"})), f"{stage.name} imports another stage"


@pytest.mark.parametrize("stage", STAGES, ids=lambda p: p.stem)
def test_every_stage_has_a_main_entry(stage):
    tree = ast.parse(stage.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{stage.name} has no main()"
    assert 'if __name__ == "__main__":' in stage.read_text()


def test_the_library_never_imports_stages_or_tests():
    for module in (REPO / "stylemap").rglob("*.py"):
        bad = {m for m in imported_modules(module) if m.split(".")[0] in ("stages", "tests")}
        assert not bad, f"{module.relative_to(REPO)} imports {sorted(bad)}"


def test_bench_imports_only_the_package():
    for script in (REPO / "bench").glob("*.py"):
        bad = {m for m in imported_modules(script) if m.split(".")[0] in ("stages", "tests")}
        assert not bad, f"{script.relative_to(REPO)} imports {sorted(bad)}"
