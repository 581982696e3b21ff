import subprocess
import sys

import pytest
import yaml

from stages.params import ParamsError, load, parse

from .conftest import ROOT


def _raw(path="params.yaml"):
    return yaml.safe_load((ROOT / path).read_text())


def _keys(d, prefix=""):
    return {prefix + k for k in d} | {x for k, v in d.items() if isinstance(v, dict) and k != "sources"
                                      for x in _keys(v, f"{prefix}{k}.")}


def test_both_profiles_pass_the_same_validation():
    cpu, prod = load(ROOT / "params.yaml"), load(ROOT / "stages/profiles/production.yaml")
    assert (cpu.profile, prod.profile) == ("cpu", "production")
    assert _keys(_raw()) == _keys(_raw("stages/profiles/production.yaml"))
    assert (prod.embed.backend, prod.embed.arch, prod.embed.pretrained) == ("open_clip", "ViT-L-14", "openai")
    assert prod.describe.backend == "vlm" and prod.label.train_labeler == "llm" and prod.sample.min_words == 15
    assert prod.sources["diffusiondb"].kind == "hf"


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["train"].update(learning_rate=0.1), r"train\.learning_rate: Extra inputs are not permitted"),
    (lambda r: r["sample"].update(n="many"), r"sample\.n: Input should be a valid integer"),
    (lambda r: r["sample"].update(cfg_min=40.0), r"cfg_min \(40\.0\) > sample\.cfg_max"),
    (lambda r: r["embed"].update(backend="resnet"), r"embed\.backend: Input should be 'style_stats' or 'open_clip'"),
    (lambda r: r.update(train_source="nowhere"), r"source 'nowhere' is not defined"),
    (lambda r: r.pop("map"), r"map: Field required"),
])
def test_bad_params_name_the_key(edit, message):
    raw = _raw()
    edit(raw)
    with pytest.raises(ParamsError, match=message):
        parse(raw)


def test_validate_command_lists_planned_stages_for_production():
    out = subprocess.run([sys.executable, "-m", "stages.params", "stages/profiles/production.yaml"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "valid (production profile)" in out
    planned = [line.split()[0] for line in out.splitlines()[1:]]
    assert planned == list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert "python -m stages.embed" in out
