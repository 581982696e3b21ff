"""convert_llm: the Gemma 3 270M GGUF (a PyPI package) -> the HF folder vLLM loads (the CPU profile's label.model).

Only when `label.model` names this stage's output: production labels with a Hub model, so there the stage writes
just a manifest saying why nothing was converted (label depends on this out either way; a dozen bytes instead of
~75 s and 1 GB). Runs in .venv-vllm: `.venv-vllm/bin/python -m stages.convert_llm`.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from stylemap import entry, paths
from stylemap.stagespec import for_stage
from stylemap.teacher.convert import MANIFEST, assemble_gguf, convert


def main(root: str | Path = ".") -> dict:
    p = for_stage("convert_llm", root)
    project = paths.Project(root)
    out_dir = project.path(paths.LLM_MODEL)
    if project.model(p.label.model) != out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"converted": False, "reason": f"label.model is {p.label.model}, not {paths.LLM_MODEL}"}
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"convert_llm: nothing to convert ({manifest['reason']})", file=sys.stderr)
        return manifest
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        manifest = convert(assemble_gguf(Path(scratch)), out_dir)
    print(f"convert_llm: {manifest['source']} -> {out_dir} ({manifest['parameters']:,} parameters, "
          f"{manifest['seconds']} s)", file=sys.stderr)
    return manifest


if __name__ == "__main__":
    entry.run(main, "convert_llm")
