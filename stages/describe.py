"""describe: one text description per sampled image (stage one of the teacher's two-stage prompt).

`describe.describer`: `prompt` lets the generation prompt stand in for the description (no model; the CPU
profile), `vlm` has a vision-language model served by vLLM analyse each image, on the executor
`describe.executor` (local: one engine here; ray: ray.data.llm replicas on a Ray cluster). Every path writes the
same shards through the one runner, so a crash resumes at the first unfinished shard.
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
    identity = {**p.describe.model_dump(exclude=RUN_KNOBS), "seed": p.seed,  # what makes a shard's rows
                "code": code_fingerprint("describe", root)}
    jobs = [shards.Job(source, shards.shard_files(sample_dir / source), out_dir / source, identity) for source in sources]
    stats = runner.run(describe_work(p.describe, p.seed), jobs, runner.executor_for(p.describe.executor, p.ray),
                       shard_size=p.describe.shard_size)
    metrics: dict = {"describer": p.describe.describer}
    for source in sources:
        print(f"describe {source}: {stats[source]['shards']} shards, {stats[source]['shards_resumed']} resumed "
              "from a previous run")
        status = shards.read_dir(out_dir / source, columns=["status"])["status"]
        metrics.update(Rejects.from_column(status, LABELLABLE).report(stats[source]["rows_in"], source))
        metrics[f"{source}.truncated_styled"] = int(status.eq("truncated_styled").sum())  # kept: labelled
        metrics[f"{source}.truncation_rate"] = float(status.isin(["truncated", "truncated_styled"]).mean()) \
            if len(status) else 0.0
    write_json(project.metrics("describe"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "describe")
