"""describe: one text description per sampled image (stage one of the teacher's two-stage prompt).

`describe.backend`: `prompt` lets the generation prompt stand in for the description (no model; the CPU
profile), `vlm` has a vision-language model served by vLLM analyse each image: one engine here
(`describe.engine: local`) or ray.data.llm replicas on a Ray cluster (`ray`). Every path writes the same
shards through the shard runner, so a crash resumes at the first unfinished shard.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from stylemap import entry, paths, shards
from stylemap.files import write_json
from stylemap.params import RUN_KNOBS, for_stage
from stylemap.rejects import Rejects
from stylemap.teacher import ray_llm
from stylemap.teacher.client import VllmWorker
from stylemap.teacher.tasks import describe_by_prompt, describe_vlm

PROMPT_COLUMNS = ["image_id", "prompt"]


def main(root: str | Path = ".") -> dict:
    p = for_stage("describe", root)
    project = paths.Project(root)
    sample_dir, out_dir = project.path(paths.SAMPLE), project.path(paths.DESCRIBE)
    sources = sorted(d.name for d in sample_dir.iterdir() if d.is_dir())
    shards.prune(out_dir, sources)  # persisted shards of sources no longer sampled
    identity = {**p.describe.model_dump(exclude=RUN_KNOBS), "seed": p.seed,  # what makes a shard's rows
                "code": shards.code_fingerprint("describe", root)}
    metrics: dict = {"backend": p.describe.backend}
    vlm = p.describe.backend == "vlm"
    on_ray = vlm and p.describe.engine == "ray"
    worker = VllmWorker.for_descriptions(p) if vlm and not on_ray else nullcontext()
    jobs = [shards.Job(source, shards.shard_files(sample_dir / source), out_dir / source, identity) for source in sources]
    args = dict(shard_size=p.describe.shard_size, schema="describe")
    if on_ray:  # every source through one set of engines
        stats = ray_llm.describe_shards(jobs, p, desc="describe", **args)
    else:
        with worker:
            fn = (lambda df: describe_vlm(df, worker, p)) if vlm else describe_by_prompt
            stats = shards.map_jobs(jobs, fn, desc="describe", columns=None if vlm else PROMPT_COLUMNS, **args)
    for source in sources:
        print(f"describe {source}: {stats[source]['shards']} shards, {stats[source]['shards_resumed']} resumed "
              "from a previous run")
        status = shards.read_dir(out_dir / source, columns=["status"])["status"]
        metrics.update(Rejects.from_column(status, "ok").report(stats[source]["rows_in"], source))
    write_json(project.metrics("describe"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "describe")
