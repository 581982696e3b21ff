"""embed: every sampled image (and every augmentation recipe) -> one L2-normalised vector, shard by shard.

Also writes data/embed/encoder.json (backend, arch, pretrained, dim): train copies it into the model card,
so evaluate and the CLI rebuild exactly this encoder without reading embed's params.
"""
from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, shards
from stylemap.files import write_json, write_text_atomic
from stylemap.model import ray_embed
from stylemap.model.embedding import embed_frame, recipe_rows
from stylemap.model.encoders import load_encoder
from stylemap.params import for_stage
from stylemap.rejects import Rejects

SAMPLE_COLUMNS = ["image_id", "image_bytes"]


def _counts(out_dir: Path, missing: int = 0) -> Rejects:
    """Rows embedded vs rejected (their `error`), plus recipes whose source image is not in the sample."""
    tally = Rejects.from_column(shards.read_dir(out_dir, columns=["error"])["error"], "")
    if missing:
        tally.count("missing_source_image", missing)
    return tally


def main(root: str | Path = ".", encoder=None) -> dict:
    p = for_stage("embed", root)
    project = paths.Project(root)
    make_encoder = (lambda: encoder) if encoder is not None else partial(load_encoder, p.embed)  # Ray actors call it
    encoder = make_encoder()

    def run(files: list[Path], out_dir: Path, expand, **args) -> dict:
        """Embed shards on the chosen engine: originals (expand None, aug_seed -1) or augmented recipe rows."""
        aug = p.embed.augment if expand else None
        args = {**args, "shard_size": p.embed.shard_size, "schema": "embed", "columns": SAMPLE_COLUMNS}
        if p.embed.engine == "ray":
            return ray_embed.embed_shards(files, out_dir, p.embed, make_encoder, encoder.preprocess, aug, expand, **args)
        prepare = expand or (lambda df: df.assign(aug_seed=-1))
        return shards.map_shards(files, out_dir, lambda df: embed_frame(prepare(df), encoder, p.embed, aug), **args)

    sample_dir, embed_dir = project.path(paths.SAMPLE), project.path(paths.EMBED)
    identity = {"backend": p.embed.backend, "arch": p.embed.arch, "pretrained": p.embed.pretrained}
    code = shards.code_fingerprint("embed", root)
    metrics: dict = {"backend": p.embed.backend, "arch": p.embed.arch if p.embed.backend == "open_clip" else "",
                     "dim": encoder.dim, "sources_present": 0, "sources_absent": 0}
    total = Rejects()
    present = []
    for source in sorted(p.sources):
        if source == paths.AUGMENTED:
            raise ValueError(f"source name {paths.AUGMENTED!r} is reserved for {paths.EMBED}/{paths.AUGMENTED}")
        files = shards.shard_files(sample_dir / source)
        if not files:
            metrics["sources_absent"] += 1
            metrics[f"{source}.absent"] = 1
            continue
        present.append(source)
        metrics["sources_present"] += 1
        stats = run(files, embed_dir / source, None, params={**identity, "code": code}, desc=f"embed {source}")
        tally = _counts(embed_dir / source)
        metrics.update(tally.report(stats["rows_in"], source))
        total.merge(tally)

    recipes = pd.read_parquet(project.path(paths.RECIPES), columns=["image_id", "aug_seed"])
    wanted = recipes[recipes["aug_seed"] >= 0]
    known = set(shards.read_dir(sample_dir / p.train_source, columns=["image_id"])["image_id"])
    missing = int((~wanted["image_id"].isin(known)).sum())
    expand = recipe_rows(wanted)
    recipe_key = hashlib.sha256(pd.util.hash_pandas_object(wanted, index=False).to_numpy().tobytes()).hexdigest()
    run(shards.shard_files(sample_dir / p.train_source), embed_dir / paths.AUGMENTED, expand,
        params={**identity, "augment": p.embed.augment.model_dump(), "recipes": recipe_key, "code": code},
        desc="embed augmented")
    tally = _counts(embed_dir / paths.AUGMENTED, missing)
    metrics.update(tally.report(len(wanted), paths.AUGMENTED))
    total.merge(tally)

    shards.prune(embed_dir, {*present, paths.AUGMENTED, "encoder.json"})  # sources no longer sampled
    metrics.update(total.report(total.kept + total.rejected))
    write_text_atomic(project.path(paths.ENCODER_CARD),
                      json.dumps({**identity, "dim": encoder.dim, "name": encoder.name}, indent=2, sort_keys=True) + "\n")
    write_json(project.metrics("embed"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "embed")
