"""describe: one text description per sampled image (stage one of the teacher's two-stage prompt).

Backends (`describe.backend`):
- `prompt`: the generation prompt stands in for the description. No model runs; provenance says so
  (`backend=prompt`, `model=generation-prompt`). The CPU profile uses it: prompts name the style.
- `vlm`: a vision-language model served by vLLM analyses each image (stages/llm.py).
Both go through the shared shard runner, so a crash resumes at the first unfinished shard.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pandas as pd

from stages import shards
from stages.params import RUN_KNOBS, Params, load

PROMPT_COLUMNS = ["image_id", "prompt"]


def describe_by_prompt(df: pd.DataFrame) -> pd.DataFrame:
    """The `prompt` backend: description = generation prompt; an empty one is recorded as such."""
    text = df["prompt"].fillna("").str.strip()
    return pd.DataFrame({
        "image_id": df["image_id"], "description": text,
        "status": text.ne("").map({True: "ok", False: "empty"}), "error": None,
        "backend": "prompt", "model": "generation-prompt", "prompt_hash": None, "sampling": None,
        "vllm_version": None,
    })


def _workers(p: Params):
    """Engine replicas (one per GPU) for the vlm backend; none for the prompt backend."""
    if p.describe.backend == "prompt":
        return nullcontext()
    from stages.llm import VllmWorker, WorkerPool

    return WorkerPool(lambda env: VllmWorker.for_descriptions(p, env), p.describe.replicas)


def _vlm(pool, p: Params):
    """Shard function of the vlm backend: each shard borrows a free engine replica."""
    from stages.llm import describe_vlm

    def describe(df: pd.DataFrame) -> pd.DataFrame:
        with pool.lease() as worker:
            return describe_vlm(df, worker, p)

    return describe


def run(p: Params, sample_dir: Path = Path("data/sample"), out_dir: Path = Path("data/describe")) -> dict:
    """Describe every source's sample shards; returns per-source counts by status."""
    metrics: dict = {"backend": p.describe.backend}
    with _workers(p) as pool:
        fn, columns = (describe_by_prompt, PROMPT_COLUMNS) if pool is None else (_vlm(pool, p), None)
        for source_dir in sorted(d for d in sample_dir.iterdir() if d.is_dir()):
            stats = shards.map_shards(
                shards.shard_files(source_dir), out_dir / source_dir.name, fn, shard_size=p.describe.shard_size,
                params=p.describe.model_dump(exclude=RUN_KNOBS), columns=columns,
                desc=f"describe {source_dir.name}", threads=len(pool) if pool else 1)
            status = shards.read_dir(out_dir / source_dir.name, columns=["status"])["status"].value_counts()
            print(f"describe {source_dir.name}: {stats['shards']} shards, {stats['shards_resumed']} resumed from a previous run")
            metrics[source_dir.name] = {"in": stats["rows_in"], "out": stats["rows_out"], **status.to_dict()}
    return metrics


def main() -> None:
    shards.write_json("metrics/describe.json", run(load()))


if __name__ == "__main__":
    main()
