"""embed: every sampled image (and every augmentation recipe) -> one L2-normalised vector, shard by shard.

Also writes data/embed/encoder.json (the encoder's identity, dim and, for packaged weights, their sha256 and the
embedding's layout): train copies it into the model card, so evaluate and the CLI rebuild exactly this encoder
without reading embed's params.
"""
from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import pandas as pd

from stylemap import entry, paths, runner, shards
from stylemap.files import write_json, write_text_atomic
from stylemap.model.embedding import EncoderSpec, embed_work, original_rows, recipe_rows
from stylemap.model.encoders import identity as encoder_identity
from stylemap.model.encoders import load_encoder
from stylemap.rejects import Rejects
from stylemap.stagespec import code_fingerprint, for_stage


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
    encoder = make_encoder()  # on Ray only the actors' copies encode: this one stays in CPU memory (ClipEncoder)

    sample_dir, embed_dir = project.path(paths.SAMPLE), project.path(paths.EMBED)
    identity = encoder_identity(p.embed)
    code = code_fingerprint("embed", root)
    metrics: dict = {"backend": p.embed.backend, "arch": p.embed.arch if p.embed.backend != "style_stats" else "",
                     "dim": encoder.dim, "sources_present": 0}
    jobs = []
    for source in sorted(p.sources):
        if source == paths.AUGMENTED:
            raise ValueError(f"source name {paths.AUGMENTED!r} is reserved for {paths.EMBED}/{paths.AUGMENTED}")
        files = shards.shard_files(sample_dir / source)
        if files:
            jobs.append(shards.Job(source, files, embed_dir / source, {**identity, "code": code}, expand=original_rows))
        else:
            metrics[f"{source}.absent"] = True
    metrics["sources_present"] = len(jobs)

    recipes = pd.read_parquet(project.path(paths.RECIPES), columns=["image_id", "aug_seed"])
    wanted = recipes[recipes["aug_seed"] >= 0]
    known = set(shards.read_dir(sample_dir / p.train_source, columns=["image_id"])["image_id"])
    missing = int((~wanted["image_id"].isin(known)).sum())
    recipe_key = hashlib.sha256(pd.util.hash_pandas_object(wanted, index=False).to_numpy().tobytes()).hexdigest()
    jobs.append(shards.Job(paths.AUGMENTED, shards.shard_files(sample_dir / p.train_source), embed_dir / paths.AUGMENTED,
                           {**identity, "augment": p.embed.augment.model_dump(), "recipes": recipe_key, "code": code},
                           expand=recipe_rows(wanted)))

    spec = EncoderSpec(make_encoder, p.embed.batch_size, p.embed.replicas, p.embed.num_gpus, loaded=encoder)
    aug = p.embed.augment  # applied to recipe rows (aug_seed >= 0) only
    stats = runner.run(embed_work(spec, encoder.preprocess, aug), jobs,
                       runner.executor_for(p.embed.executor, p.ray, p.embed.loader_workers),
                       shard_size=p.embed.shard_size)
    total = Rejects()
    for job in jobs:
        tally = _counts(job.out_dir, missing if job.name == paths.AUGMENTED else 0)
        metrics.update(tally.report(len(wanted) if job.name == paths.AUGMENTED else stats[job.name]["rows_in"], job.name))
        total.merge(tally)

    present = [job.name for job in jobs]
    shards.prune(embed_dir, {*present, "encoder.json"})  # sources no longer sampled
    metrics.update(total.report(total.kept + total.rejected))
    write_text_atomic(project.path(paths.ENCODER_CARD),
                      json.dumps({**identity, "dim": encoder.dim, "name": encoder.name, **encoder.provenance},
                                 indent=2, sort_keys=True) + "\n")
    write_json(project.metrics("embed"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "embed")
