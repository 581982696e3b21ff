"""A CPU rehearsal of the production profile: every production code path, at toy scale, through real `dvc repro`.

`profile: production` in a throw-away copy of the repository (tests/test_pipeline.py's copy), with size overrides
written into that copy's `stylemap/profiles/production.yaml` (the profile file overrides params.yaml and is a DVC
dep). What runs is production's, except where a CPU cannot:

- **sample**: both DiffusionDB sources are `kind: hf` with range reads, served by `tests.support.hub_server` (a
  stand-in for the Hub and its CDN on localhost, `endpoint` pointed at it) from a DiffusionDB-2M-shaped corpus
  (`testing.write_diffusiondb`: 4 parts x 24 rows, some rejectable); `diffusiondb` 20 kept images,
  `diffusiondb_analysis` 10, `exclude: [diffusiondb]`. `playgroundai` and `journeydb` stay absent (optional).
- **describe**: `describer: vlm`, `executor: ray` (ray.data.llm on the local Ray cluster the stage starts) with the
  tiny random Qwen2.5-VL (`tests/support/tiny_vlm.py`: production's architecture, processors and chat template),
  greedy as in production. Its text is noise, and greedy noise never ends before `max_tokens`: every row would be
  `truncated` and label would have nothing to label. So the test scales the end token's row of the tiny model's
  `lm_head` by EOS_BOOST (measured: x1.0 never ends, x1.1 and up ends after one character), and every answer is
  one noise character then the end: status `ok`. (Sampling at temperature > 0 instead is not possible on
  vLLM-CPU: a seeded sampled request kills the engine, `CPU Generator does not use offset`.)
- **label**: `prompt: chat` on `executor: ray` with the real Gemma 3 270M (converted once per test session) plus
  Gemma 3's chat template, which the base model's tokenizer lacks (written by the test, as tiny_vlm ships Qwen's).
- **convert_llm** converts nothing: production's label.model is a Hub model.
- **embed**: open_clip `ViT-L-14-quickgelu` on `executor: ray` with a random checkpoint (`fixtures.save_random_clip`,
  the `pretrained`-is-a-file path), `num_gpus: 0`.
- then train, evaluate, predict, audit, quantify, map, report, as in production.

Two runs. The random VLM's descriptions all read alike, so their LLM labels are one style and no probe can be
trained on them: run 1 is `dvc repro describe` with the VLM; run 2 sets `describe.describer: prompt` (the CPU
profile's stand-in: the generation prompt is the description) and runs `dvc repro`, so Gemma's chat-path labels
of real prompts train the probe and everything downstream runs. `describe.describer` moves from the copy's
production.yaml to its params.yaml (the merged params are the same), so run 2 re-runs describe onwards only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from stylemap import shards
from stylemap.paths import REPO as ROOT
from stylemap.profile import merge
from stylemap.teacher.client import VLLM_PYTHON
from tests.support.fixtures import save_random_clip, write_diffusiondb
from tests.support.hub_server import HubServer
from tests.test_pipeline import VENV, copy_checkout, ran, sh

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=f"{VLLM_PYTHON} missing: run bash .ci/setup-vllm")]

ARCH = "ViT-L-14-quickgelu"
EOS_BOOST = 1.5  # the tiny VLM's end-token logit scale: greedy answers end after one character (docstring)
# Gemma 3's chat template (Google's, for string contents): the system turn prefixes the first user turn,
# the assistant speaks as `model`
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "<start_of_turn>{{ role }}\n{{ (first_user_prefix if loop.first else '') }}{{ message['content'] | trim }}"
    "<end_of_turn>\n{%- endfor -%}{%- if add_generation_prompt -%}<start_of_turn>model\n{%- endif -%}")
STAGES = {"demo", "repackage", "sample", "describe", "convert_llm", "label", "balance", "embed", "train", "evaluate",
          "predict", "asked", "audit", "quantify", "map", "report"}


def overrides(endpoint: str, tiny_vlm: Path, chat_model: Path, clip: Path) -> dict:
    """Toy sizes over production.yaml; every engine, backend, format and prompt form stays production's."""
    hub = {"endpoint": endpoint}
    return {
        "sources": {"diffusiondb": {**hub, "n": 20}, "diffusiondb_analysis": {**hub, "n": 10}},
        "sample": {"n": 20, "parts_in_flight": 2, "shard_size": 16},
        "describe": {"model": str(tiny_vlm), "max_tokens": 16, "batch_size": 8,
                     "shard_size": 16, "timeout_s": 300},
        "label": {"model": str(chat_model), "batch_size": 8, "shard_size": 16, "timeout_s": 300},
        "balance": {"min_count": 2, "cap": 100, "target": 4},
        "embed": {"pretrained": str(clip), "batch_size": 16, "loader_workers": 1, "num_gpus": 0, "shard_size": 16},
        "evaluate": {"kmeans_k": 1},
        "map": {"fit_sample": 10},
    }


CPU_SIZES = {  # params.yaml keys production.yaml does not set, shrunk in the copy's params.yaml
    "demo": {"crops_per_subject": 1, "side": 64},
    "train": {"epochs": 50, "val_fraction": 0.3},
    "audit": {"folds": 2, "review_top": 4},
    "quantify": {"app_folds": 2, "app_sample_size": 10, "app_repeats": 5, "bootstrap": 10, "trend_min_images": 2},
    "map": {"n_neighbors": 5},
}


REPRO_TIMEOUT_S = 1200  # a stage that waits forever (e.g. a Ray placement that never fits) fails the test instead


def boost_end_token(model_dir: Path) -> None:
    """Scale the end token's output row of the tiny VLM by EOS_BOOST, so its greedy answers end (docstring)."""
    from safetensors.torch import load_file, save_file

    eos = json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"]
    weights = load_file(model_dir / "model.safetensors")
    weights["lm_head.weight"][eos] *= EOS_BOOST
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})


def run_logged(cmd: str, cwd: Path, log: Path, env: dict) -> tuple[int, str]:
    """Run `cmd` with its output in `log`; on timeout kill its process group (the stages' local Ray clusters too)."""
    with log.open("a") as f:
        proc = subprocess.Popen(cmd, shell=True, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=REPRO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            f.write(f"\n*** {cmd!r} killed after {REPRO_TIMEOUT_S} s ***\n")
            rc = -9
    return rc, log.read_text()


def in_kept_rejected(metrics: dict, prefix: str = "") -> list[tuple[str, int, int, int]]:
    """Every (group, in, kept, rejected) in a metrics file, nested or with dotted keys."""
    flat: dict = {}

    def walk(node, key):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}{k}.")
        else:
            flat[key[:-1]] = node
    walk(metrics, prefix)
    out = []
    for key, value in flat.items():
        if key == "in" or key.endswith(".in"):
            group = key[:-2]
            if f"{group}kept" in flat and f"{group}rejected" in flat:
                out.append((group or ".", value, flat[f"{group}kept"], flat[f"{group}rejected"]))
    return out


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, gemma_dir):
    """The copy, run twice (module docstring): a namespace of repo, run1 (copies of the VLM run's describe and
    label outputs and metrics), the dvc logs of both runs, Hub traffic and timings."""
    work = tmp_path_factory.mktemp("rehearsal")
    repo = work / "main"
    copy_checkout(repo)  # no ../shared: repackage's Horde source is absent, so that CPU-profile stage is empty
    timings = {}

    start = time.monotonic()
    write_diffusiondb(work / "hub", parts=4, per_part=24, seed=0)
    tiny = work / "qwen2_5_vl"
    subprocess.run([str(VLLM_PYTHON), "tests/support/tiny_vlm.py", str(tiny)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    boost_end_token(tiny)
    chat = work / "gemma3-270m-chat"  # the converted Gemma as a chat model: its files plus Gemma 3's template
    shutil.copytree(gemma_dir, chat)
    (chat / "chat_template.jinja").write_text(GEMMA_CHAT_TEMPLATE)
    clip = save_random_clip(work / "vit-l-14-quickgelu-random.pt", ARCH)
    timings["inputs_s"] = time.monotonic() - start

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params = merge({**params, "profile": "production"}, CPU_SIZES)
    env = {**os.environ, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    run1, logs = work / "run1", {}
    with HubServer(work / "hub") as hub:
        profile = repo / "stylemap/profiles/production.yaml"
        production = merge(yaml.safe_load(profile.read_text()), overrides(hub.endpoint, tiny, chat, clip))
        params["describe"]["describer"] = production["describe"].pop("describer")  # docstring: run 2 changes it
        profile.write_text(yaml.safe_dump(production, sort_keys=False))
        write_yaml(repo / "params.yaml", params)
        sh("git init -q && git add -A && git commit -qm init", repo)
        start = time.monotonic()
        rc, logs[1] = run_logged("dvc repro describe", repo, work / "run1.log", env)
        assert rc == 0, f"dvc repro describe failed (log {work / 'run1.log'}):\n{logs[1][-8000:]}"
        timings["run1_s"] = time.monotonic() - start
        shutil.copytree(repo / "data/describe", run1 / "describe")
        shutil.copy2(repo / "metrics/describe.json", run1)
        write_yaml(repo / "params.yaml", merge(params, {"describe": {"describer": "prompt"}}))
        start = time.monotonic()
        rc, logs[2] = run_logged("dvc repro", repo, work / "run2.log", env)
        timings["run2_s"] = time.monotonic() - start
        traffic = dict(hub.traffic)
    print("rehearsal timings:", {k: round(v, 1) for k, v in timings.items()})
    assert rc == 0, f"dvc repro failed (log {work / 'run2.log'}):\n{logs[2][-8000:]}"
    return SimpleNamespace(repo=repo, run1=run1, logs=logs, traffic=traffic, chat=chat)


def write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def metrics(root: Path, stage: str) -> dict:
    return json.loads((root / f"{stage}.json").read_text())


def test_every_stage_ran_and_counts_reconcile(rehearsal):
    repo = rehearsal.repo
    assert ran(rehearsal.logs[1]) == {"demo", "repackage", "sample", "describe"}
    assert ran(rehearsal.logs[2]) == STAGES - {"demo", "repackage", "sample"}  # describe.describer changed
    assert json.loads((repo / "data/models/gemma3-270m/conversion.json").read_text())["converted"] is False
    for stage in ["sample", "describe", "label", "balance", "embed", "predict", "asked", "map"]:
        groups = in_kept_rejected(metrics(repo / "metrics", stage))
        assert groups, f"metrics/{stage}.json has no in/kept/rejected"
        bad = [g for g in groups if g[1] != g[2] + g[3]]
        assert not bad, f"metrics/{stage}.json: in != kept + rejected for {bad}"
    for stage in ["evaluate", "audit", "quantify"]:
        assert metrics(repo / "metrics", stage)
    assert (repo / "plots/report.html").stat().st_size > 0


def test_hub_sources_were_range_read(rehearsal):
    repo, traffic = rehearsal.repo, rehearsal.traffic
    sample = metrics(repo / "metrics", "sample")
    assert sample["diffusiondb"]["kept"] == 20 and sample["diffusiondb_analysis"]["kept"] == 10
    assert sample["playgroundai"] == sample["journeydb"] == {"absent": True}
    assert traffic["resolve"] > 2 and traffic["cdn"] > 30 and traffic["cdn_bytes"] > 0
    train = shards.read_dir(repo / "data/sample/diffusiondb", columns=["image_id"])
    analysis = shards.read_dir(repo / "data/sample/diffusiondb_analysis", columns=["image_id"])
    names = [set(ids.str.split("/", n=1).str[1]) for ids in (train["image_id"], analysis["image_id"])]
    assert not names[0] & names[1]  # exclude: disjoint draws


def test_describe_rows_came_from_the_vlm_on_ray(rehearsal):
    rows = shards.read_dir(rehearsal.run1 / "describe")
    assert len(rows) == 30 and set(rows["backend"]) == {"vlm"}
    assert set(rows["model"]) == {str(rehearsal.chat.parent / "qwen2_5_vl")}
    assert rows["vllm_version"].notna().all()
    assert rows["status"].eq("ok").all(), rows["status"].value_counts().to_dict()  # EOS_BOOST: answers end
    assert metrics(rehearsal.run1, "describe")["describer"] == "vlm"


def test_chat_labels_of_prompts_train_the_probe(rehearsal):
    repo = rehearsal.repo
    labels = pd.read_parquet(repo / "data/labels/diffusiondb.parquet")
    template = (ROOT / "stylemap/teacher/prompts/label_fewshot.txt").read_text().rstrip()
    assert labels["llm_status"].ne("skipped_no_description").all()
    assert set(labels["llm_prompt_hash"]) == {hashlib.sha256(f"chat\n{template}".encode()).hexdigest()}
    assert set(labels["llm_model"]) == {str(rehearsal.chat)} and labels["vllm_version"].notna().all()
    ok = labels[labels["llm_status"].eq("ok")]
    assert len(ok) and ok["llm_raw"].map(len).between(3, 6).all()
    assert labels["styles"].map(list).tolist() == labels["llm_styles"].map(list).tolist()  # train_labeler: llm
    recipes = pd.read_parquet(repo / "data/balance/recipes.parquet")
    assert recipes["image_id"].str.startswith("diffusiondb/").all() and recipes["label"].nunique() >= 2
    card = json.loads((repo / "data/model/model_card.json").read_text())
    assert card["classes"] == sorted(recipes["label"].unique())


def test_embed_is_open_clip_vit_l(rehearsal):
    m = metrics(rehearsal.repo / "metrics", "embed")
    assert (m["backend"], m["arch"], m["dim"]) == ("open_clip", ARCH, 768)


def test_the_analysis_platform_is_predicted_mapped_and_reported(rehearsal):
    repo = rehearsal.repo
    assert len(pd.read_parquet(repo / "data/predict/diffusiondb_analysis.parquet")) == 10
    assert len(pd.read_parquet(repo / "data/map/diffusiondb_analysis.parquet")) == 10
    assert "diffusiondb_analysis" in (repo / "plots/report.html").read_text()


def test_a_sample_pushed_from_a_cpu_box_and_pulled_on_the_gpu_box_is_not_sampled_again(rehearsal, tmp_path):
    """README "Sample on a CPU box, the rest on the GPU box": the sampled outputs (and what sample depends on) go
    through a DVC remote with the commit of dvc.lock; on a fresh clone `dvc pull` makes sample up to date, so
    `dvc repro` there starts at describe and never reaches the Hub (whose stand-in is gone by now)."""
    repo, remote, gpu_box = rehearsal.repo, tmp_path / "remote", tmp_path / "gpu-box"
    sh(f"git add -A && git commit -qm 'sampled on the CPU box' && dvc remote add --local -d box {remote} && "
       "dvc push --with-deps sample", repo)
    sh(f"git clone -q {repo} {gpu_box}", tmp_path)
    sh(f"dvc remote add --local -d box {remote} && dvc pull --with-deps sample", gpu_box)
    assert "Data and pipelines are up to date" in sh("dvc status --with-deps sample", gpu_box)
    assert ran(sh("dvc repro sample", gpu_box)) == set()
    assert shards.read_dir(gpu_box / "data/sample/diffusiondb").equals(shards.read_dir(repo / "data/sample/diffusiondb"))
