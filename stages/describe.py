"""describe: one text description per sampled image (stage one of the teacher's two-stage prompt).

`describe.describer`: `prompt` lets the generation prompt stand in for the description (no model; the CPU
profile), `vlm` has a vision-language model served by vLLM analyse each image, on the executor
`describe.executor` (local: one engine here; ray: ray.data.llm replicas on a Ray cluster). Every path writes the
same shards through the one runner, so a crash resumes at the first unfinished shard.

Only the train source's labels train the probe: every image of it is described, while each other platform gets
a seeded subset of `describe.platform_subset` images (0 = all), enough for its label agreement and audit
figures; the rest are counted as `not_in_subset`.
"""
from __future__ import annotations

from pathlib import Path

from stylemap import entry, paths, runner, shards
from stylemap.files import write_json
from stylemap.params import RUN_KNOBS
from stylemap.rejects import Rejects
from stylemap.schemas import LABELLABLE
from stylemap.stagespec import code_fingerprint, for_stage
from stylemap.teacher.describe import describe_work


def main(root: str | Path = ".") -> dict:
    p = for_stage("describe", root)
    project = paths.Project(root)
    sample_dir, out_dir = project.path(paths.SAMPLE), project.path(paths.DESCRIBE)
    sources = sorted(d.name for d in sample_dir.iterdir() if d.is_dir())
    shards.prune(out_dir, sources)  # persisted shards of sources no longer sampled
    # what makes a shard's rows (a subset's size shows in its input file: the train source's shards stay valid)
    identity = {**p.describe.model_dump(exclude=RUN_KNOBS | {"platform_subset"}), "seed": p.seed,
                "code": code_fingerprint("describe", root)}
    work = describe_work(p.describe, p.seed)
    subset = {s: 0 if s == p.train_source else p.describe.platform_subset for s in sources}
    jobs = [shards.Job(source, inputs(sample_dir / source, subset[source], p.seed, work.columns,
                                      out_dir / f"_subset.{source}.parquet"), out_dir / source, identity)
            for source in sources]
    stats = runner.run(work, jobs, runner.executor_for(p.describe.executor, p.ray), shard_size=p.describe.shard_size)
    metrics: dict = {"describer": p.describe.describer}
    for source in sources:
        print(f"describe {source}: {stats[source]['shards']} shards, {stats[source]['shards_resumed']} resumed "
              "from a previous run")
        status = shards.read_dir(out_dir / source, columns=["status"])["status"]
        tally = Rejects.from_column(status, LABELLABLE)
        sampled = shards.count_rows(shards.shard_files(sample_dir / source))
        if sampled > stats[source]["rows_in"]:
            tally.count("not_in_subset", sampled - stats[source]["rows_in"])
        metrics.update(tally.report(sampled, source))
        metrics[f"{source}.truncated_styled"] = int(status.eq("truncated_styled").sum())  # kept: labelled
        metrics[f"{source}.truncation_rate"] = float(status.isin(["truncated", "truncated_styled"]).mean()) \
            if len(status) else 0.0
    write_json(project.metrics("describe"), metrics)
    return metrics


def inputs(source_dir: Path, subset: int, seed: int, columns: list[str], scratch: Path) -> list[Path]:
    """The sample shards describe reads: all of them, or one file (`scratch`) of a seeded `subset` of their rows."""
    files = shards.shard_files(source_dir)
    if subset:
        ids = shards.read_dir(source_dir, columns=["image_id"])["image_id"]
        if subset < len(ids):
            return [shards.write_subset(files, set(ids.sample(n=subset, random_state=seed)), scratch, columns)]
    scratch.unlink(missing_ok=True)  # an earlier run's subset
    return files


if __name__ == "__main__":
    entry.run(main, "describe")
