"""repackage: the Horde corpus (DiffusionDB layout) written again as img2dataset's webdataset output.

The CPU profile then reads its two platforms through two formats (demo: DiffusionDB; horde: img2dataset),
as production reads DiffusionDB, img2dataset and JourneyDB. Where `repackage.source` is absent, the output
folder stays empty and sample reports the platform absent. The corpus's gold classes (styles.csv) are
carried over under the new keys, and each image's Horde model as the extra column `model`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from stylemap import entry, paths
from stylemap.corpus.readers import open_corpus
from stylemap.corpus.readers.local import is_absent
from stylemap.corpus.repackage import to_webdataset
from stylemap.params import Source
from stylemap.stagespec import for_stage


def main(root: str | Path = ".") -> dict:
    p = for_stage("repackage", root)
    project = paths.Project(root)
    source = project.root / p.repackage.source
    out = project.path(paths.REPACKAGED)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if is_absent(source):
        print(f"repackage: {source} is absent; {out} stays empty (the platform is reported absent)")
        return {"absent": True}
    corpus = open_corpus(Source(kind="local", path=str(source), format="diffusiondb"))
    gold = source / "styles.csv"
    styles = pd.read_csv(gold, dtype=str) if gold.exists() else None
    models = {"model": dict(zip(styles["image_name"], styles["model"]))} \
        if styles is not None and "model" in styles.columns else {}  # the Horde model that made each image
    keys, counts = to_webdataset(corpus, out, p.repackage.shard_size, p.repackage.max_member_bytes, models)
    if styles is not None:
        styles["image_name"] = styles["image_name"].map(keys)
        styles.dropna(subset=["image_name"]).to_csv(out / "styles.csv", index=False)
    print(f"repackage: {counts['rows']} rows into {counts['shards']} webdataset shards "
          f"({counts['failed_to_download']} unreadable, kept as failed rows)")
    return {"absent": False, **counts}


if __name__ == "__main__":
    entry.run(main, "repackage")
