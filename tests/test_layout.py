"""The layout rules: stages are thin and independent; bench/ uses the library and the test support only."""
from __future__ import annotations

import ast

import pytest

from stylemap.paths import REPO
from tests.code_deps import imported_modules, module_file

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


@pytest.mark.parametrize("folder", ["bench", "tests/support"])
def test_bench_and_the_test_support_import_the_library_and_the_test_support_only(folder):
    for script in (REPO / folder).glob("*.py"):
        bad = {m for m in imported_modules(script) if m.split(".")[0] == "stages"
               or (m.split(".")[0] == "tests" and m.split(".")[:2] != ["tests", "support"])}
        assert not bad, f"{script.relative_to(REPO)} imports {sorted(bad)}"


def test_the_library_names_no_folder_outside_the_repository():
    for module in (REPO / "stylemap").rglob("*.py"):
        assert "shared/" not in module.read_text(), f"{module.relative_to(REPO)} names ../shared (test support's)"


def _import_circle(modules: list) -> list[str]:
    """The first circle of imports among `modules` (repo files), as the files around it; [] when there is none."""
    graph = {f: {m for n in imported_modules(f) if n.startswith("stylemap")
                 and (m := module_file(n)) in modules and m != f} for f in modules}
    state: dict = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return [str(p.relative_to(REPO)) for p in path[path.index(dep):]]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = "done"
        return []

    return next((found for f in sorted(modules) if f not in state and (found := visit(f, [f]))), [])


def test_no_import_circle_anywhere_in_the_package():
    assert _import_circle(sorted((REPO / "stylemap").rglob("*.py"))) == []


@pytest.mark.parametrize("module", sorted((REPO / "stylemap").rglob("*.py")) + sorted((REPO / "stages").glob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_over_300_lines(module):
    assert len(module.read_text().splitlines()) <= 300, f"{module.relative_to(REPO)}: split it"

