"""describe: one text description per sampled image (stage one of the teacher's two-stage prompt).

`describe.backend`: `prompt` lets the generation prompt stand in for the description (no model; the CPU
profile), `vlm` has a vision-language model served by vLLM analyse each image. Both go through the
shard runner, so a crash resumes at the first unfinished shard.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from stylemap import entry, paths, shards
from stylemap.files import write_json
from stylemap.params import RUN_KNOBS, for_stage
from stylemap.rejects import Rejects
from stylemap.teacher.client import VllmWorker, WorkerPool
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
    pool_cm = WorkerPool(lambda env: VllmWorker.for_descriptions(p, env), p.describe.replicas,
                         p.describe.gpus_per_replica) if vlm else nullcontext()
    with pool_cm as pool:
        def on_replica(df):  # each shard borrows a free engine replica
            with pool.lease() as worker:
                return describe_vlm(df, worker, p)

        for source in sources:
            stats = shards.map_shards(
                shards.shard_files(sample_dir / source), out_dir / source, on_replica if vlm else describe_by_prompt,
                shard_size=p.describe.shard_size, params=identity, schema="describe",
                columns=None if vlm else PROMPT_COLUMNS, desc=f"describe {source}", threads=len(pool) if vlm else 1)
            print(f"describe {source}: {stats['shards']} shards, {stats['shards_resumed']} resumed from a previous run")
            status = shards.read_dir(out_dir / source, columns=["status"])["status"]
            metrics.update(Rejects.from_column(status, "ok").report(stats["rows_in"], source))
    write_json(project.metrics("describe"), metrics)
    return metrics


if __name__ == "__main__":
    entry.run(main, "describe")
