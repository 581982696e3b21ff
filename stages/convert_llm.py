"""convert_llm: the Gemma 3 270M GGUF (a PyPI package) -> the HF folder vLLM loads (the CPU profile's label.model).

Runs in .venv-vllm: `.venv-vllm/bin/python -m stages.convert_llm`.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from stylemap import paths
from stylemap.teacher.convert import assemble_gguf, convert


def main(root: str | Path = ".") -> dict:
    out_dir = paths.Project(root).path(paths.LLM_MODEL)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
        manifest = convert(assemble_gguf(Path(scratch)), out_dir)
    print(f"convert_llm: {manifest['source']} -> {out_dir} ({manifest['parameters']:,} parameters, "
          f"{manifest['seconds']} s)", file=sys.stderr)
    return manifest


if __name__ == "__main__":
    main()
