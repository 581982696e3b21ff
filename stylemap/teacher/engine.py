"""A teacher's model as one spec, and the inference it gives on either executor.

`VllmSpec` is built once from a teacher's params (`describe_spec`, `label_spec`) and holds everything both
transports need: vLLM's engine arguments, the sampling spec and how to serve it. The runner (stylemap/runner.py)
asks it for its inference: `local()` starts one engine in a child process (client.py), `on_ray(ds)` adds
ray.data.llm's stages to a Ray dataset (ray_llm.py). Both take prepared rows {image_id, request (JSON) or None,
reason} and give the same rows with a `protocol.Result`'s columns and `vllm_version`, so what a teacher computes
per record (describe.py, label.py) knows nothing of where its model runs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from stylemap.entry import UserError
from stylemap.params import Describe, Label
from stylemap.teacher import gpu_memory
from stylemap.teacher.protocol import STRUCTURED


class ModelMissing(UserError):
    """label.model names a local folder that holds no converted model."""


@dataclass(frozen=True)
class VllmSpec:
    vllm_args: dict  # vllm.LLM keywords, model included
    sampling: dict  # protocol.sampling_kwargs' input: temperature, max_tokens, seed, json_schema | choice
    chat: bool  # requests are chat turns (the model's chat template applies) rather than completion prompts
    vision: bool  # requests carry an image
    batch_size: int  # ray: rows per block sent to a replica (local sends a whole shard as one list)
    replicas: int  # ray: engines; 0 = as many as the cluster's GPUs hold
    timeout_s: float  # no request finished for this long = a hung engine
    retries: int
    rows_per_call: ClassVar[int | None] = None  # the runner hands local inference a whole shard

    @property
    def gpus_per_replica(self) -> int:
        return int(self.vllm_args.get("tensor_parallel_size", 1))

    @contextmanager
    def local(self) -> Iterator[Callable[[pd.DataFrame], pd.DataFrame]]:
        """One engine in a child process for the whole stage; each call sends its rows as one list."""
        from stylemap.teacher.client import VllmWorker, served

        gpu_memory.check_released()
        with VllmWorker(self.vllm_args, timeout_s=self.timeout_s, retries=self.retries) as worker:
            yield served(worker, self.sampling)

    def on_ray(self, ds):
        """ray.data.llm's stages for these rows: `replicas` engines on the cluster, started together."""
        from stylemap.teacher import ray_llm

        return ray_llm.generate(ds, self)


def results_of(rows: pd.DataFrame) -> pd.DataFrame:
    """Inferred rows with every missing value as None: rows back from Ray Data come through Arrow, where a null
    string can arrive as pandas' NA, whose truth value is an error."""
    return rows.astype(object).where(rows.notna(), None)


def describe_spec(d: Describe, seed: int) -> VllmSpec:
    """describe's VLM: one image and no video per prompt, so startup profiling reserves memory for one image."""
    return VllmSpec({"limit_mm_per_prompt": {"image": 1, "video": 0}, **d.vllm_args, "model": d.model,
                     "max_model_len": d.max_model_len, "seed": seed},
                    describe_sampling(d, seed), chat=True, vision=True, batch_size=d.batch_size,
                    replicas=d.replicas, timeout_s=d.timeout_s, retries=d.retries)


def label_spec(lab: Label, model: str | Path, seed: int, json_schema: dict) -> VllmSpec:
    """label's LLM; `model` is label.model resolved (`Project.model`: a local folder as a Path, which must hold a
    converted model, or a Hub id)."""
    if isinstance(model, Path) and not (model / "config.json").exists():
        raise ModelMissing(f"label.model {model} has no config.json: run `dvc repro convert_llm` first")
    return VllmSpec({"structured_outputs_config": STRUCTURED, **lab.vllm_args, "model": str(model),
                     "max_model_len": lab.max_model_len, "seed": seed},
                    label_sampling(lab, seed, json_schema), chat=lab.prompt == "chat", vision=False,
                    batch_size=lab.batch_size, replicas=lab.replicas, timeout_s=lab.timeout_s, retries=lab.retries)


def describe_sampling(d: Describe, seed: int) -> dict:
    return {"temperature": d.temperature, "max_tokens": d.max_tokens, "seed": seed}


def label_sampling(lab: Label, seed: int, json_schema: dict) -> dict:
    return {"temperature": lab.temperature, "max_tokens": lab.max_tokens, "seed": seed, "json_schema": json_schema}
