"""The teachers on the Ray engine: ray.data.llm processors running vLLM, `replicas` engines on the cluster.

vLLM pins its own torch (2.13) while the pipeline's venv has the encoder's (2.14.1), so the processor's stages
(chat template, image preparation, the engine) run under .venv-vllm's Python (`runtime_env` `py_executable`;
that venv holds the same Ray version), while this driver and the request-building tasks stay in the pipeline's.

What stays identical to the local engine, so shards and provenance columns are the same:
- requests: built by `tasks.describe_requests` / `tasks.label_requests` (here in Ray CPU tasks);
- engine arguments: `client.describe_engine` / `client.label_engine`, plus the worker's CPU defaults on a
  cluster without GPUs; structured outputs and sampling from the same dicts;
- chat templates: the processor's chat-template stage applies the model's template with the generation
  prompt, as vLLM's `llm.chat` does locally;
- shard frames: `tasks.describe_frame` / `tasks.label_frame`, written by `cluster.map_shards_ray`.

Two gaps of ray.data.llm 2.60, bridged here: its rows carry no `finish_reason`, so a completion with
`max_tokens` tokens is taken as cut ("length"); and every row must reach the engine, so a request that
cannot be sent (undecodable image, no description) travels as a one-token placeholder and comes back with
its own reason as the error. A request the engine rejects comes back with vLLM's error (should_continue_on_error).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stylemap import cluster, shards
from stylemap.labels.taxonomy import Taxonomy
from stylemap.params import Params, Teacher
from stylemap.teacher import tasks
from stylemap.teacher.client import VLLM_PYTHON, describe_engine, label_engine
from stylemap.teacher.worker import CPU_DEFAULTS

# vllm_site/sitecustomize.py bridges a module vLLM 0.32 moved and Ray 2.60 still imports
RUNTIME_ENV = {"py_executable": str(VLLM_PYTHON), "env_vars": {"PYTHONPATH": str(Path(__file__).parent / "vllm_site")}}
LIGHT_CPUS = 0.25  # CPU cluster: CPUs per light actor (chat template, image preparation) and light task


def vllm_sampling(spec: dict) -> dict:
    """The worker protocol's sampling dict as vllm.SamplingParams keywords (ray.data.llm builds the object)."""
    spec = dict(spec)
    schema = spec.pop("json_schema", None)
    return {**spec, "structured_outputs": {"json": schema}} if schema is not None else spec


def vllm_version() -> str:
    """The version of vLLM the cluster's .venv-vllm holds, as the local worker reports it."""
    ray = cluster.connect()
    probe = ray.remote(lambda: __import__("vllm").__version__).options(runtime_env=RUNTIME_ENV, num_cpus=0)
    return ray.get(probe.remote())


def processor(t: Teacher, engine: dict, sampling: dict, gpus: int, *, chat: bool, vision: bool):
    """A ray.data.llm processor on a cluster with `gpus` GPUs: rows {ROW, image_id, request (JSON), reason} ->
    {ROW, image_id, text, finish_reason, error}."""
    from ray.data.llm import vLLMEngineProcessorConfig, build_processor

    # no per-request stats: a failed row has none, and Ray Data 2.60 cannot join a block whose `metrics` column is
    # all null to one where it is a struct (TypeError in transform_pyarrow), which failed whole batches
    kwargs = {"disable_log_stats": True, **{k: v for k, v in engine.items() if k != "model"}}
    placement, light = None, {}
    if not gpus:  # CPU cluster: the worker's CPU defaults, one CPU per engine instead of a GPU, and the light
        kwargs = {**CPU_DEFAULTS, **kwargs}  # stages' actors on a fraction of a CPU: at one CPU each they would
        placement = {"bundles": [{"CPU": 1}], "strategy": "PACK"}  # hold a small cluster and starve the engine
        light = {"num_cpus": LIGHT_CPUS}
    config = vLLMEngineProcessorConfig(
        model_source=engine["model"], engine_kwargs=kwargs, batch_size=t.batch_size,
        concurrency=cluster.replica_count(t.replicas, t.gpus_per_replica if gpus else 0),
        placement_group_config=placement, runtime_env=RUNTIME_ENV, should_continue_on_error=True,
        log_engine_metrics=False, chat_template_stage={"enabled": chat, **light},
        prepare_multimodal_stage={"enabled": vision, **light},
        tokenize_stage=False, detokenize_stage=False)
    # a placeholder shaped like the real requests (Arrow wants one type per column)
    placeholder = ({"messages": [{"role": "user", "content": [{"type": "text", "text": "-"}] if vision else "-"}]}
                   if chat else {"prompt": "-"})
    max_tokens = sampling["max_tokens"]

    def preprocess(row: dict) -> dict:
        if row["reason"]:
            request, params = placeholder, {**vllm_sampling(sampling), "max_tokens": 1}  # same keys and types
        else:
            request, params = json.loads(row["request"]), vllm_sampling(sampling)
        return {**request, "sampling_params": params, cluster.ROW: row[cluster.ROW], "image_id": row["image_id"],
                "reason": row["reason"]}

    def postprocess(row: dict) -> dict:
        sent = not row["reason"]
        return {cluster.ROW: row[cluster.ROW], "image_id": row["image_id"],
                "text": row["generated_text"] if sent else None,
                "finish_reason": ("length" if row["num_generated_tokens"] >= max_tokens else "stop") if sent else None,
                "error": row["reason"] or None}

    return build_processor(config, preprocess=preprocess, postprocess=postprocess, preprocess_map_kwargs=light,
                           postprocess_map_kwargs=light)


def _prepare(build):
    """A Ray Data batch function: input rows -> {ROW, image_id, request, reason} via a tasks.*_requests builder."""
    def prepare(df: pd.DataFrame) -> pd.DataFrame:
        requests = build(df)
        return pd.DataFrame({cluster.ROW: df[cluster.ROW].to_numpy(), "image_id": df["image_id"].to_numpy(),
                             "request": [None if isinstance(r, str) else json.dumps(r) for r in requests],
                             "reason": [r if isinstance(r, str) else "" for r in requests]})
    return prepare


def results(frame: pd.DataFrame) -> list[dict]:
    """Rows streamed back -> engine results in the worker protocol's shape (nulls as None, not pandas' NA); a row
    the engine failed carries ray.data.llm's `__inference_error__` instead of the postprocessed columns."""
    def value(v):
        return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v

    failed = frame["__inference_error__"] if "__inference_error__" in frame else [""] * len(frame)
    return [{"text": None if err else value(text), "finish_reason": None if err else value(finish),
             "error": value(err) or value(error)}
            for text, finish, error, err in zip(frame["text"], frame["finish_reason"], frame["error"], failed)]


def _teach(jobs: list[shards.Job], t: Teacher, engine: dict, sampling: dict, build, frame, *, chat: bool,
           vision: bool, **args) -> dict:
    """Both teachers on Ray: requests built by `build(rows)` in CPU tasks (Ray's default of one CPU each on a GPU
    cluster, a fraction beside CPU engines), generated by one set of engines for every job, and each shard made by
    `frame(rows, results, vllm version)` here."""
    gpus = cluster.cluster_gpus()
    engines = processor(t, engine, sampling, gpus, chat=chat, vision=vision)
    task_cpus = {} if gpus else {"num_cpus": LIGHT_CPUS}
    version = vllm_version()
    return cluster.map_shards_ray(
        jobs, lambda ds: engines(ds.map_batches(_prepare(build), batch_format="pandas", **task_cpus)),
        lambda rows: frame(rows, results(rows), version), **args)


def describe_shards(jobs: list[shards.Job], p: Params, **args) -> dict:
    """describe (backend vlm) on Ray, every source through one set of engines: images decoded and requests built
    in CPU tasks, analysed by the VLM. Returns each source's shard stats."""
    return _teach(jobs, p.describe, describe_engine(p), tasks.describe_sampling(p),
                  lambda df: tasks.describe_requests(df, p),
                  lambda rows, results, version: tasks.describe_frame(rows, results, p, version),
                  chat=True, vision=True, columns=["image_id", "prompt", "image_bytes"], **args)


def label_shards(jobs: list[shards.Job], p: Params, model: str | Path, taxonomy: Taxonomy, fewshot: Path,
                 **args) -> dict:
    """label's LLM on Ray, every source through one set of engines: the few-shot prompt (completion or chat
    turns), constrained to the style schema. Returns each source's shard stats."""
    return _teach(jobs, p.label, label_engine(p, model), tasks.label_sampling(p),
                  lambda df: tasks.label_requests(df, p, fewshot),
                  lambda rows, results, version: tasks.label_frame(rows, results, p, taxonomy, fewshot, version),
                  chat=p.label.prompt == "chat", vision=False, columns=["image_id", "description", "status"], **args)
