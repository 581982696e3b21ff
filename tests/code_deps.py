"""Which repository files a stage module uses: its own file, the stylemap modules it imports (transitively)
and the package data those modules open (a sibling file or folder named by a string literal in the source)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    """stylemap.model.probe -> stylemap/model/probe.py (or the package's __init__.py); None outside the repo."""
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Absolute module names `path` imports (`import a.b`, `from a.b import c` with c a module or not) or runs."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("stylemap."):
            names.add(node.value)  # a module started as a process: `python -m stylemap.teacher.worker`
    return names


def package_data(path: Path) -> set[Path]:
    """Non-Python siblings of a module that its source names in a string literal (templates/, prompts/, *.yaml)."""
    literals = {node.value for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return {sibling for sibling in path.parent.iterdir()
            if sibling.name in literals and sibling.suffix != ".py" and sibling.name != "__pycache__"
            and not (sibling / "__init__.py").exists()}


def code_deps(stage_file: Path) -> set[Path]:
    """Every repo file (relative paths) that running `stage_file` reads as code or package data."""
    seen: set[Path] = set()
    todo = [stage_file]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            if name.split(".")[0] in ("stylemap", "stages") and (found := module_file(name)):
                if found.name == "__init__.py" and found.stat().st_size == 0:
                    continue  # an empty package marker carries no code
                todo.append(found)
    data = set().union(*(package_data(p) for p in seen))
    return {p.relative_to(REPO) for p in seen | data}
