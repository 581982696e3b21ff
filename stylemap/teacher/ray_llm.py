"""The Ray transport of a teacher: ray.data.llm's processor, `replicas` vLLM engines on the cluster.

vLLM pins its own torch (2.13) while the pipeline's venv has the encoder's (2.14.1), so the processor's stages
(chat template, image preparation, the engine) run under .venv-vllm's Python (`runtime_env` `py_executable`;
that venv holds the same Ray version), while the driver and the runner's CPU tasks stay in the pipeline's.

What stays identical to the local transport, so shards and provenance columns are the same: the requests (built
by the work's prepare step), the engine arguments and sampling (one `engine.VllmSpec`, translated by
`protocol.sampling_kwargs`, plus the worker's CPU defaults on a cluster without GPUs), and the chat templates
(the processor's chat-template stage applies the model's template with the generation prompt, as vLLM's
`llm.chat` does locally).

A watchdog, which ray.data.llm 2.60 lacks: Ray Data restarts a dead engine actor and retries its batch without
bound (`max_restarts=-1`), so an engine that always dies (CUDA out of memory) would loop forever. Here the engines
restart and retry at most `retries` times, must all be up within `START_TIMEOUT_S`, and the run fails (one line,
cluster.Stalled) when no block moves for `timeout_s`; no engine left over by an earlier run may hold GPU memory
on this node when they start (gpu_memory.py).

Two gaps of ray.data.llm 2.60, bridged here: its rows carry no `finish_reason`, so a completion with
`max_tokens` tokens is taken as cut ("length"); and every row must reach the engine, so a request that
cannot be sent (undecodable image, no description) travels as a one-token placeholder and comes back with
its own reason as the error. A request the engine rejects comes back with vLLM's error (should_continue_on_error).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stylemap import cluster
from stylemap.teacher import gpu_memory
from stylemap.teacher.client import VLLM_PYTHON, with_results
from stylemap.teacher.protocol import CPU_DEFAULTS, Result, sampling_kwargs

# vllm_site/sitecustomize.py bridges a module vLLM 0.32 moved and Ray 2.60 still imports
RUNTIME_ENV = {"py_executable": str(VLLM_PYTHON), "env_vars": {"PYTHONPATH": str(Path(__file__).parent / "vllm_site")}}
CARRIED = (cluster.ROW, "image_id")  # prepared columns that travel through the processor unchanged
START_TIMEOUT_S = 1800  # engines must all be up by then (the local worker's start timeout)
ENGINE_STAGE = "vLLMEngineStage"


def vllm_version() -> str:
    """The version of vLLM the cluster's .venv-vllm holds, as the local worker reports it."""
    ray = cluster.connect()
    probe = ray.remote(lambda: __import__("vllm").__version__).options(runtime_env=RUNTIME_ENV, num_cpus=0)
    return ray.get(probe.remote())


def processor_config(spec, gpus: int):
    """ray.data.llm's config for an `engine.VllmSpec` on a cluster with `gpus` GPUs, and the light stages' resources: a fixed pool of
    `replicas` engines, all started at once (an integer `concurrency` is an autoscaling pool from one engine)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    # no per-request stats: a failed row has none, and Ray Data 2.60 cannot join a block whose `metrics` column is
    # all null to one where it is a struct (TypeError in transform_pyarrow), which failed whole batches
    kwargs = {"disable_log_stats": True, **{k: v for k, v in spec.vllm_args.items() if k != "model"}}
    placement, light = None, {}
    if not gpus:  # CPU cluster: the worker's CPU defaults, one CPU per engine instead of a GPU, and the light
        kwargs = {**CPU_DEFAULTS, **kwargs}  # stages' actors on a fraction of a CPU: at one CPU each they would
        placement = {"bundles": [{"CPU": 1}], "strategy": "PACK"}  # hold a small cluster and starve the engine
        light = {"num_cpus": cluster.LIGHT_CPUS}
    n = cluster.replica_count(spec.replicas, spec.gpus_per_replica if gpus else 0)
    config = vLLMEngineProcessorConfig(
        model_source=spec.vllm_args["model"], engine_kwargs=kwargs, batch_size=spec.batch_size,
        concurrency=(n, n), placement_group_config=placement, runtime_env=RUNTIME_ENV,
        should_continue_on_error=True, log_engine_metrics=False, chat_template_stage={"enabled": spec.chat, **light},
        prepare_multimodal_stage={"enabled": spec.vision, **light}, tokenize_stage=False, detokenize_stage=False)
    return config, light


def generate(ds, spec):
    """Prepared rows {ROW, image_id, request, reason} -> the same rows with a Result's columns and vllm_version."""
    from ray.data.llm import build_processor

    gpu_memory.check_released()
    config, light = processor_config(spec, cluster.cluster_gpus())
    version = vllm_version()
    sampling = sampling_kwargs(spec.sampling)
    # a placeholder shaped like the real requests (Arrow wants one type per column)
    content = [{"type": "text", "text": "-"}] if spec.vision else "-"
    placeholder = {"messages": [{"role": "user", "content": content}]} if spec.chat else {"prompt": "-"}

    def preprocess(row: dict) -> dict:
        if row["reason"]:
            request, params = placeholder, {**sampling, "max_tokens": 1}  # same keys and types
        else:
            request, params = json.loads(row["request"]), sampling
        return {**request, "sampling_params": params, "reason": row["reason"], **{k: row[k] for k in CARRIED}}

    def postprocess(row: dict) -> dict:
        sent = not row["reason"]
        cut = row["num_generated_tokens"] >= spec.sampling["max_tokens"]
        return {**{k: row[k] for k in CARRIED}, "text": row["generated_text"] if sent else None,
                "finish_reason": ("length" if cut else "stop") if sent else None, "error": row["reason"] or None}

    engines = build_processor(config, preprocess=preprocess, postprocess=postprocess, preprocess_map_kwargs=light,
                              postprocess_map_kwargs=light)
    engines.get_stage_by_name(ENGINE_STAGE).map_batches_kwargs.update(max_restarts=spec.retries,
                                                                      max_task_retries=spec.retries)
    ds.context.wait_for_min_actors_s = START_TIMEOUT_S  # one context object for the whole chain of datasets
    ds.context.execution_no_progress_timeout_s = spec.timeout_s
    return engines(ds).map_batches(lambda rows: _results(rows, version), batch_format="pandas", batch_size=None, **light)


def _results(rows: pd.DataFrame, version: str) -> pd.DataFrame:
    """Rows streamed back -> the local transport's columns (nulls as None, not pandas' NA); a row the engine failed
    carries ray.data.llm's `__inference_error__` instead of the postprocessed columns."""
    def value(v):
        return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v

    failed = rows["__inference_error__"] if "__inference_error__" in rows else [""] * len(rows)
    results = [Result(text=None if err else value(text), finish_reason=None if err else value(finish),
                      error=value(err) or value(error))
               for text, finish, error, err in zip(rows["text"], rows["finish_reason"], rows["error"], failed)]
    return with_results(rows[list(CARRIED)], results, version)
