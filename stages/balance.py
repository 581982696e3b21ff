"""balance: the training source's labels -> class-balanced training recipes (drop rare, cap big, upsample small)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from stylemap import entry, paths, schemas
from stylemap.files import write_json
from stylemap.labels.balance import balance
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("balance", root)
    project = paths.Project(root)
    labels = pd.read_parquet(project.path(paths.LABELS, f"{p.train_source}.parquet"), columns=["image_id", "styles"])
    recipes, report = balance(labels, p.balance, p.seed)
    schemas.write("recipes", recipes, project.path(paths.RECIPES))
    write_json(project.metrics("balance"), report)
    return report


if __name__ == "__main__":
    entry.run(main, "balance")
