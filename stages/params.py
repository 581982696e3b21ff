"""Typed, validated params.

Every stage reads params through `load()`, so an unknown key, a wrong type or an
impossible range fails before any work starts, with the offending key named.
Both profiles (params.yaml and stages/profiles/production.yaml) pass the same models.

Run `python -m stages.params [PARAMS_FILE]` to validate a profile and print the
stages `dvc repro` would run, with their commands (a GPU-free dry run).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


# How a stage runs, not what it computes: changing these must not invalidate finished shards.
RUN_KNOBS = {"replicas", "retries", "timeout_s", "batch_size", "workers"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Source(Strict):
    kind: Literal["local", "hf"]
    path: str = Field(min_length=1)  # directory (local) or dataset repo id (hf), e.g. poloclub/diffusiondb
    layout: Literal["2m", "large"] = "2m"  # DiffusionDB 2M (PNG, images/) or Large (WebP, two part folders)
    optional: bool = False
    revision: str = "main"
    cache_dir: str = "data/hf-cache"
    min_words: int | None = Field(default=None, ge=0)  # overrides sample.min_words for this platform
    endpoint: str = ""  # Hub URL; empty = huggingface_hub's default (tests point it at a local server)


class Demo(Strict):
    crops_per_subject: int = Field(ge=1)
    size: int = Field(ge=32, le=2048)


class Sample(Strict):
    n: int = Field(ge=1)
    languages: list[str] = Field(min_length=1)
    min_words: int = Field(ge=0)
    min_alpha_ratio: float = Field(ge=0, le=1)
    cfg_min: float
    cfg_max: float
    max_pixels: int = Field(ge=1)
    shard_size: int = Field(ge=1)

    @model_validator(mode="after")
    def _cfg_range(self):
        if self.cfg_min > self.cfg_max:
            raise ValueError(f"sample.cfg_min ({self.cfg_min}) > sample.cfg_max ({self.cfg_max})")
        return self


class Teacher(Strict):
    """A vLLM-served model and how to run it (describe's VLM, label's LLM)."""

    model: str
    max_model_len: int = Field(ge=256)  # label: 10 few-shot examples (~900 tokens) + description + answer
    max_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    replicas: int = Field(ge=0)  # vLLM engines, one per GPU; 0 = one per visible GPU (one on CPU)
    shard_size: int = Field(ge=1)


class Describe(Teacher):
    backend: Literal["prompt", "vlm"]
    image_max_side: int = Field(ge=32)


class Label(Teacher):
    train_labeler: Literal["keywords", "llm"]
    run_llm: bool
    max_styles: int = Field(ge=1, le=10)
    taxonomy: str
    fewshot: str

    @model_validator(mode="after")
    def _llm_needed(self):
        if self.train_labeler == "llm" and not self.run_llm:
            raise ValueError("label.train_labeler is 'llm' but label.run_llm is false")
        return self


class Balance(Strict):
    min_count: int = Field(ge=1)
    cap: int = Field(ge=1)
    target: int = Field(ge=0)
    rotate_limit: float = Field(ge=0, le=180)
    crop_scale: tuple[float, float]
    brightness: float = Field(ge=0, le=1)
    contrast: float = Field(ge=0, le=1)
    blur_limit: int = Field(ge=3)
    noise_std: tuple[float, float]


class Embed(Strict):
    backend: Literal["style_stats", "open_clip"]
    arch: str
    pretrained: str
    batch_size: int = Field(ge=1)
    workers: int = Field(ge=0)
    shard_size: int = Field(ge=1)


class Train(Strict):
    val_fraction: float = Field(gt=0, lt=1)
    dedup_hamming: int = Field(ge=0, le=64)
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)


class Evaluate(Strict):
    top_k: int = Field(ge=1)
    ece_bins: int = Field(ge=2)
    kmeans_k: int = Field(ge=1)
    zero_shot_templates: list[str] = Field(min_length=1)


class Predict(Strict):
    platforms: list[str] = Field(min_length=1)


class Map(Strict):
    n_neighbors: int = Field(ge=2)
    min_dist: float = Field(ge=0)
    fit_sample: int = Field(ge=10)


class Params(Strict):
    profile: str
    seed: int
    sources: dict[str, Source]
    train_source: str
    demo: Demo
    sample: Sample
    describe: Describe
    label: Label
    balance: Balance
    embed: Embed
    train: Train
    evaluate: Evaluate
    predict: Predict
    map: Map

    @model_validator(mode="after")
    def _sources_known(self):
        for name in [self.train_source, *self.predict.platforms]:
            if name not in self.sources:
                raise ValueError(f"source {name!r} is not defined under `sources`")
        return self


class ParamsError(ValueError):
    """params file is invalid; the message names every offending key."""


def parse(raw: dict, origin: str = "params") -> Params:
    """Validate a params mapping; YAML numbers like `1` are accepted where floats are expected."""
    try:
        return Params.model_validate(raw, strict=False)
    except ValidationError as err:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise ParamsError(f"{origin} is invalid:\n" + "\n".join(lines)) from None


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping, got {type(raw).__name__}")
    return parse(raw, str(path))


def planned_stages(dvc_yaml: str | Path = "dvc.yaml") -> list[tuple[str, str]]:
    """(stage name, command) in file order: what `dvc repro` would run on a clean cache."""
    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    return [(name, spec["cmd"]) for name, spec in stages.items()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "params.yaml"
    try:
        params = load(path)
    except ParamsError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{path}: valid ({params.profile} profile)")
    for name, cmd in planned_stages():
        print(f"  {name:10s} {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
