import pytest
import yaml

from stylemap.paths import REPO
from stylemap.profile import ParamsError, load, parse
from tests.support.fixtures import raw_params, write_params


def test_production_profile_holds_overrides_only_and_validates():
    overrides = yaml.safe_load((REPO / "stylemap/profiles/production.yaml").read_text())
    base = yaml.safe_load((REPO / "params.yaml").read_text())

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("sources", "vllm_args"):  # mappings of free keys are values
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    base_leaves = dict(leaves(base))
    for key, value in leaves(overrides):
        assert key in base_leaves, f"{key} is not a params.yaml key"
        assert base_leaves.get(key) != value, f"{key} repeats params.yaml's value"
    prod = load(REPO, profile="production")
    assert prod.profile == "production"
    assert (prod.embed.backend, prod.embed.arch, prod.embed.pretrained) == ("open_clip", "ViT-L-14-quickgelu", "openai")
    assert prod.describe.describer == "vlm" and prod.label.train_labeler == "llm" and prod.sample.min_words == 15
    assert prod.sources["diffusiondb"].kind == "hf" and prod.embed.augment == load(REPO).embed.augment
    # the study's four sets, and none of the CPU profile's demo corpora (they would go through the 7B teachers)
    assert list(prod.sources) == ["diffusiondb", "diffusiondb_analysis", "playgroundai", "journeydb"]
    assert prod.sources["diffusiondb_analysis"].exclude == ["diffusiondb"] and prod.sources["journeydb"].redistribute is False
    assert (prod.sources["journeydb"].format, prod.sources["journeydb"].syntax) == ("journeydb", "midjourney")
    # ray.data.llm builds vLLM's config without a usage context: unset, vLLM 0.32 falls back to 128 sequences and
    # 2048 batched tokens on any GPU, so both teachers on Ray size them (production.yaml has the KV arithmetic)
    for teacher in (prod.describe, prod.label):
        assert teacher.executor == "ray" and teacher.vllm_args["max_num_seqs"] == 512
        assert teacher.vllm_args["max_num_batched_tokens"] == 16384
    assert prod.describe.platform_subset == 5000 and prod.ray.spill_dir == "data/ray-spill"


def test_an_unknown_profile_is_named(tmp_path):
    write_params(tmp_path)
    with pytest.raises(ParamsError, match="profile 'gpu' is unknown; known: \\['cpu', 'production'\\]"):
        load(tmp_path, profile="gpu")


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["train"].update(learning_rate=0.1), r"train\.learning_rate: Extra inputs are not permitted"),
    (lambda r: r["sample"].update(n="many"), r"sample\.n: Input should be a valid integer"),
    (lambda r: r["sample"].update(cfg_min=40.0), r"cfg_min \(40\.0\) > sample\.cfg_max"),
    (lambda r: r["embed"].update(backend="resnet"), r"embed\.backend: Input should be 'style_stats', 'efficientnet_lite' or 'open_clip'"),
    (lambda r: r.update(train_source="nowhere"), r"source 'nowhere' is not defined"),
    (lambda r: r.pop("map"), r"map: Field required"),
    (lambda r: r.update(seed=-1), r"seed: Input should be greater than or equal to 0"),
    (lambda r: r.update(seed=2**40), r"seed: Input should be less than or equal to 4294967295"),
    (lambda r: r["embed"]["augment"].update(crop_scale=[1.0, 0.7]), r"embed\.augment\.crop_scale must satisfy"),
    (lambda r: r["embed"]["augment"].update(noise_std=[0.0, 2.0]), r"embed\.augment\.noise_std must satisfy"),
    (lambda r: r["label"].update(train_labeler="llm"), r"label\.llm_subset must be 0"),
])
def test_bad_params_name_the_key(edit, message):
    raw = raw_params()
    edit(raw)
    with pytest.raises(ParamsError, match=message):
        parse(raw)


def test_engine_arguments_cannot_override_the_teachers_own_keys():
    raw = raw_params({"label.vllm_args": {"seed": 3}})
    with pytest.raises(ParamsError, match=r"label: Value error, vllm_args sets \['seed'\]"):
        parse(raw)


def test_more_than_one_engine_replica_needs_the_ray_executor():
    with pytest.raises(ParamsError, match=r"replicas 2 needs executor: ray"):
        parse(raw_params({"label.replicas": 2}))
    assert parse(raw_params({"label.replicas": 2, "label.executor": "ray"})).label.replicas == 2
