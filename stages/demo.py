"""demo: build the CPU profile's demo corpus (scikit-image photos in six styles, DiffusionDB layout)."""
from __future__ import annotations

from pathlib import Path

from stylemap import entry, paths
from stylemap.corpus import demo
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("demo", root)
    out = paths.Project(root).path(paths.DEMO)
    rows = demo.build_rows(p.demo.crops_per_subject, p.demo.side, p.seed)
    demo.write_corpus(rows, out, p.demo.side)
    print(f"demo: wrote {len(rows)} images to {out}")
    return {"images": len(rows)}


if __name__ == "__main__":
    entry.run(main, "demo")
