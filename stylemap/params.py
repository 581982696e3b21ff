"""Typed, validated params: the schema of params.yaml and of the profiles merged over it. Every key is a field, so
an unknown key, a wrong type or an impossible range fails before any work starts, naming the key (profile.parse);
reading params.yaml with its profile is profile.py's, which params a stage may read dvc.yaml's (stagespec.py)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GLOBAL_KEYS = ("profile", "seed", "sources", "train_source", "platforms", "gold_source", "ray")  # read by several stages
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seed range
# How a stage runs, not what it computes: changing these must not invalidate finished shards.
RUN_KNOBS = {"replicas", "retries", "timeout_s", "batch_size", "loader_workers", "executor", "vllm_args", "num_gpus"}
EXECUTORS = Literal["local", "ray"]  # a heavy stage runs in this process (local) or on a Ray cluster (ray)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# The corpus formats, each read by stylemap/corpus/readers/<format>.py, and their layouts; the first is the default.
LAYOUTS = {
    "diffusiondb": ["2m", "large"],  # 2M (PNG, images/) or Large (WebP, two part folders)
    "journeydb": ["train", "valid"],  # the split: data/<split>/imgs/NNN.tgz + its annotation jsonl.tgz
    "img2dataset": ["webdataset", "parquet", "files"],  # img2dataset's output_format
    "folder": [""],
}


class Source(Strict):
    kind: Literal["local", "hf"]
    path: str = Field(min_length=1)  # directory (local) or dataset repo id (hf), e.g. poloclub/diffusiondb
    format: Literal[tuple(LAYOUTS)] = "diffusiondb"  # type: ignore[valid-type]
    layout: str = ""  # a layout of the format (LAYOUTS); empty = the format's default
    syntax: Literal["plain", "midjourney"] = "plain"  # platform parameter syntax stripped from prompts
    exclude: list[str] = []  # sources whose drawn images this one never draws (a disjoint analysis sample)
    redistribute: bool = True  # false: aggregate outputs only (no thumbnails, prompts or per-image rows shared)
    optional: bool = False
    revision: str = "main"
    cache_dir: str = "data/hf-cache"
    n: int | None = Field(default=None, ge=1)  # overrides sample.n for this source
    min_words: int | None = Field(default=None, ge=0)  # overrides sample.min_words for this platform
    endpoint: str = ""  # Hub URL; empty = huggingface_hub's default (tests point it at a local server)
    generator: str = ""  # the model that made every image of this corpus (e.g. DiffusionDB 2M: stable-diffusion-1.x)
    generator_column: str = ""  # else: the table column naming each image's model (img2dataset, folder)
    # rows: a uniform sample of rows; on the Hub only their images' bytes are read (HTTP ranges). parts: whole
    # parts, seeded (a cluster sample: wider intervals), each downloaded whole (README "Sampling the Hub")
    draw: Literal["rows", "parts"] = "rows"
    keep_parts: bool = False  # draw parts on the Hub: keep downloaded parts in cache_dir (else deleted once read)

    @model_validator(mode="before")
    @classmethod
    def _default_layout(cls, data):
        if isinstance(data, dict) and not data.get("layout"):
            return {**data, "layout": LAYOUTS.get(data.get("format", "diffusiondb"), [""])[0]}
        return data

    @model_validator(mode="after")
    def _layout_of_format(self):
        if self.layout not in LAYOUTS[self.format]:
            raise ValueError(f"layout {self.layout!r} is not one of format {self.format!r}'s: {LAYOUTS[self.format]}")
        if self.keep_parts and (self.kind, self.draw) != ("hf", "parts"):
            raise ValueError("keep_parts applies to parts downloaded whole: kind hf with draw: parts")
        if self.generator_column and (self.generator or self.format not in ("img2dataset", "folder")):
            raise ValueError("generator_column names a column of an img2dataset or folder table, instead of generator")
        if self.kind == "hf" and self.format != "diffusiondb":
            raise ValueError(f"kind hf reads DiffusionDB from the Hub; a {self.format} source is kind local "
                             "(download it first, under its terms)")
        return self


class Demo(Strict):
    crops_per_subject: int = Field(ge=1)
    side: int = Field(ge=32, le=2048)  # not `size`: DVC's run cache drops nested keys named size/nfiles


class Repackage(Strict):
    source: str = Field(min_length=1)  # a DiffusionDB-layout folder, rewritten as img2dataset webdataset
    shard_size: int = Field(ge=1)
    max_member_bytes: int = Field(ge=1)


class Sample(Strict):
    n: int = Field(ge=1)
    languages: list[str] = Field(min_length=1)
    min_words: int = Field(ge=0)
    min_alpha_ratio: float = Field(ge=0, le=1)
    cfg_min: float
    cfg_max: float
    max_pixels: int = Field(ge=1)
    max_member_bytes: int = Field(ge=1)  # an archive member inflating past this is rejected (zip bombs)
    max_image_nsfw: float = Field(ge=0, le=2)  # DiffusionDB's image_nsfw score above this is rejected (null: kept)
    max_prompt_nsfw: float = Field(ge=0, le=2)  # DiffusionDB's prompt_nsfw score above this is rejected
    nsfw_screen_max: float = Field(ge=0, le=1)  # an image with no corpus score is scored (corpus/nsfw.py); above: rejected
    image_side: int = Field(ge=32, le=16383)  # stored images' longer side at most this (WebP's limit: 16383)
    parts_in_flight: int = Field(ge=1)  # corpus parts read at once: reading one overlaps decoding others
    shard_size: int = Field(ge=1)

    @model_validator(mode="after")
    def _cfg_range(self):
        if self.cfg_min > self.cfg_max:
            raise ValueError(f"sample.cfg_min ({self.cfg_min}) > sample.cfg_max ({self.cfg_max})")
        return self


class Teacher(Strict):  # a vLLM-served model and how to run it (describe's VLM, label's LLM)
    model: str
    max_model_len: int = Field(ge=256)  # label: 10 few-shot examples (~900 tokens) + description + answer
    max_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    executor: EXECUTORS
    replicas: int = Field(ge=0)  # vLLM engines (ray); 0 = as many as the cluster's GPUs hold (one on CPU)
    shard_size: int = Field(ge=1)
    # more vllm.LLM arguments (gpu_memory_utilization, tensor_parallel_size, max_num_seqs, ...), not the keys above
    vllm_args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _engine_keys(self):
        owned = {"model", "max_model_len", "seed"} & set(self.vllm_args)
        if owned:
            raise ValueError(f"vllm_args sets {sorted(owned)}; set them as the teacher's own keys")
        if self.executor == "local" and self.replicas > 1:
            raise ValueError(f"replicas {self.replicas} needs executor: ray (executor: local runs one vLLM engine)")
        return self


class Describe(Teacher):
    describer: Literal["prompt", "vlm"]
    image_max_side: int = Field(ge=32)
    platform_subset: int = Field(ge=0)  # images described per platform other than the train source (seeded); 0 = all


class Label(Teacher):
    train_labeler: Literal["keywords", "llm"]
    run_llm: bool
    llm_subset: int = Field(ge=0)  # descriptions per source the LLM labels (seeded); 0 = all of them
    max_styles: int = Field(ge=1, le=10)
    taxonomy: str
    fewshot: str
    prompt: Literal["completion", "chat"]  # completion for a base model; chat (its chat template) for Instruct

    @model_validator(mode="after")
    def _llm_needed(self):
        if self.train_labeler == "llm" and not self.run_llm:
            raise ValueError("label.train_labeler is 'llm' but label.run_llm is false")
        if self.train_labeler == "llm" and self.llm_subset:
            raise ValueError("label.train_labeler is 'llm': label.llm_subset must be 0 (every image needs a label)")
        return self


class Balance(Strict):
    min_count: int = Field(ge=1)
    cap: int = Field(ge=1)
    target: int = Field(ge=0)


class Augment(Strict):  # albumentations recipe applied at embed time to the balance stage's upsampled copies
    rotate_limit: float = Field(ge=0, le=180)
    crop_scale: tuple[float, float]
    brightness: float = Field(ge=0, le=1)
    contrast: float = Field(ge=0, le=1)
    blur_limit: int = Field(ge=3)
    noise_std: tuple[float, float]

    @model_validator(mode="after")
    def _ranges(self):
        for name, (lo, hi), top in (("crop_scale", self.crop_scale, 1.0), ("noise_std", self.noise_std, 1.0)):
            if not 0 < lo <= hi <= top:
                raise ValueError(f"embed.augment.{name} must satisfy 0 < low <= high <= {top}, got [{lo}, {hi}]")
        return self


class Embed(Strict):
    backend: Literal["style_stats", "efficientnet_lite", "open_clip"]
    arch: str
    pretrained: str
    style_blocks: list[int]  # efficientnet_lite: blocks whose per-channel mean and std form the style vector
    batch_size: int = Field(ge=1)
    loader_workers: int = Field(ge=0)  # local: DataLoader workers decoding ahead of the encoder
    executor: EXECUTORS
    replicas: int = Field(ge=0)  # ray: encoder actors; 0 = one per GPU of the cluster (one on CPU)
    num_gpus: float = Field(ge=0)  # ray: GPUs per encoder actor (0 on a CPU cluster)
    shard_size: int = Field(ge=1)
    augment: Augment


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
    baseline_encoder: Literal["", "style_stats"]  # probe refitted on its embeddings of the same split ("" = none)
    bootstrap: int = Field(ge=10)  # replicates behind the gold scores' intervals
    confidence: float = Field(gt=0, lt=1)


class Predict(Strict):
    executor: EXECUTORS


class Audit(Strict):  # label audit: cleanlab on out-of-fold probe probabilities, and suspect images to review
    folds: int = Field(ge=2)  # cross-fitting folds (grouped by prompt) for out-of-fold probabilities
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"]
    review_top: int = Field(ge=0)  # most suspect images given a thumbnail for review
    thumb_side: int = Field(ge=16, le=1024)  # thumbnail side in pixels


class Quantify(Strict):
    methods: list[Literal["cc", "pcc", "acc", "pacc", "emq"]] = Field(min_length=1)  # ties: the first listed wins
    app_folds: int = Field(ge=2)  # held-out folds of the validation split for the prevalence protocol
    app_sample_size: int = Field(ge=1)
    app_repeats: int = Field(ge=1)  # prevalence vectors per fold
    bootstrap: int = Field(ge=2)  # replicates behind each interval
    confidence: float = Field(gt=0, lt=1)
    shift_rows: int = Field(ge=2)  # embeddings per side in the MMD² shift measure
    shift_factor: float = Field(ge=1)  # a platform's MMD² above this many times the validation split's warns
    trend_min_images: int = Field(ge=1)  # months with fewer dated images get no share (counted)
    generator_min_images: int = Field(ge=1)  # generating models with fewer images get no shares (counted)

    @model_validator(mode="after")
    def _cc_listed(self):
        if "cc" not in self.methods:
            raise ValueError("quantify.methods must list cc: the report shows classify-and-count beside the adjusted shares")
        return self


class Map(Strict):
    n_neighbors: int = Field(ge=2)
    min_dist: float = Field(ge=0)
    fit_sample: int = Field(ge=10)
    umap: Literal["umap-learn", "cuml"]  # cuml (GPU) is never picked silently: not importable = an error
    parallel: bool  # false: seeded, reproducible, one thread; true: unseeded, all cores, varies run to run


class Ray(Strict):  # how the Ray executor streams a stage's input through the object store (README "Ray")
    # parts' worth of input rows between their read and the pipeline's end (the store peaks above it: tests/test_
    # streaming.py); >= 2: Ray Data's first batching step holds rows until it has a batch (runner.stream checks)
    shards_in_flight: int = Field(ge=2)
    block_rows: int = Field(ge=1)  # rows per Ray Data block
    temp_dir: str  # a cluster the stage starts (no RAY_ADDRESS): its session folder ("" = /tmp/ray; cluster.connect)
    spill_dir: str  # ... and its object store's spill folder ("" = in the session folder), on the big disk


class Asked(Strict):  # the style a prompt asks for against the style its image shows (stylemap/model/asked.py)
    taxonomy: str  # the style names looked for in prompts: the keyword labeller's taxonomy
    max_styles: int = Field(ge=1, le=10)  # styles per prompt, first mention first
    min_prompts: int = Field(ge=1)  # a style fewer prompts ask for gets no follow rate
    bootstrap: int = Field(ge=2)  # replicates behind each interval
    confidence: float = Field(gt=0, lt=1)


class Params(Strict):
    profile: str
    seed: int = Field(ge=0, le=SEED_MAX)
    sources: dict[str, Source]
    train_source: str
    platforms: list[str] = Field(min_length=1)
    gold_source: str = ""  # a source whose styles.csv gold scores the pipeline (corpus/gold.py); "" = none
    demo: Demo
    repackage: Repackage
    sample: Sample
    describe: Describe
    label: Label
    balance: Balance
    embed: Embed
    train: Train
    evaluate: Evaluate
    predict: Predict
    audit: Audit
    quantify: Quantify
    asked: Asked
    map: Map
    ray: Ray

    @model_validator(mode="after")
    def _sources_known(self):
        for name in [self.train_source, *self.platforms]:
            if name not in self.sources:
                raise ValueError(f"source {name!r} is not defined under `sources`")
        if self.gold_source and self.gold_source not in self.sources:
            raise ValueError(f"gold_source {self.gold_source!r} is not defined under `sources`")
        order = list(self.sources)
        for name, src in self.sources.items():
            for other in src.exclude:
                if other not in self.sources or order.index(other) >= order.index(name):
                    raise ValueError(f"sources.{name}.exclude: {other!r} must be a source listed before {name!r} "
                                     "(its draw is made first)")
        return self
