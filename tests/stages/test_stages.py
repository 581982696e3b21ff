"""Every stage (but convert_llm, which the slow pipeline test runs) against one temporary project, in DVC order.

Each stage reads only <project>/params.yaml and its inputs under <project>, so the chain below is what
`dvc repro` runs, minus DVC. Counts reconcile in every stage's metrics.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from stages import (asked, audit, balance, demo, describe, embed, evaluate, label, map, predict, quantify, report, sample,
                    train)
from stylemap import shards
from stylemap.model.cnn_style import WEIGHTS
from tests.support.fixtures import write_params


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    write_params(root, {"demo.crops_per_subject": 1, "demo.side": 64, "label.run_llm": False,
                        "balance.min_count": 4, "balance.target": 12, "train.epochs": 30, "train.val_fraction": 0.3,
                        "embed.loader_workers": 0, "quantify.bootstrap": 40, "quantify.app_repeats": 20,
                        "quantify.trend_min_images": 5, "asked.min_prompts": 2, "asked.bootstrap": 40,
                        "quantify.generator_min_images": 5},
                 replace={"sources": {"demo": {"kind": "local", "path": "data/demo", "generator": "demo-filters"},
                                      "horde": {"kind": "local", "path": "absent", "optional": True}}})
    return root


def qu_methods(metrics: dict) -> set[str]:
    return {key.split(".")[1] for key in metrics if key.startswith("app_mae.")}


def metrics(root, stage):
    return json.loads((root / f"metrics/{stage}.json").read_text())


def test_stages_in_dvc_order(project):
    assert demo.main(project)["images"] == 64
    s = sample.main(project)
    assert s["horde"] == {"absent": True} and s["demo"]["in"] == 64 == s["demo"]["kept"] + s["demo"]["rejected"]
    scores = shards.read_dir(project / "data/sample/demo", columns=["image_nsfw", "image_nsfw_by"])
    assert (scores["image_nsfw_by"] == "corpus").all() and (scores["image_nsfw"] == 0).all()  # the demo scores itself

    d = describe.main(project)
    assert d["demo.in"] == d["demo.kept"] + d["demo.rejected"] == s["demo"]["kept"]
    assert d["demo.truncation_rate"] == 0.0 and d["demo.truncated_styled"] == 0  # prompts are never cut

    lab = label.main(project)["demo"]
    assert lab["in"] == lab["kept"] + lab["rejected"] == d["demo.in"] and "llm" not in lab
    labels = pd.read_parquet(project / "data/labels/demo.parquet")
    assert labels["llm_status"].isna().all() and (labels["styles"].map(len) > 0).sum() == lab["kept"]

    b = balance.main(project)
    assert b["in"] == b["kept"] + b["rejected"] == lab["in"] and b["classes"] == 6

    e = embed.main(project)
    assert e["in"] == e["kept"] + e["rejected"] and e["demo.kept"] == s["demo"]["kept"]

    card = train.main(project)
    assert card["embedding"]["backend"] == "efficientnet_lite" and len(card["classes"]) == 6  # the CPU default
    assert card["embedding"]["weights_sha256"] == WEIGHTS["efficientnet-lite0"].sha256
    assert card["embedding"]["layout"] == ["block5.mean:192", "block5.std:192", "pooled:1280"]
    ev = evaluate.main(project)
    assert ev["val_images"] > 0 and ev == pytest.approx(metrics(project, "evaluate"), abs=1e-6)

    pr = predict.main(project)
    assert pr["demo.in"] == pr["demo.kept"] + pr["demo.rejected"] and pr["horde.absent"] is True

    au = audit.main(project)
    split = card["split"]
    assert au["in"] == au["kept"] + au["rejected"] == split["in"] - split["rejected.missing_embedding"]
    assert au["kept"] == split["train"] - split["train_augmented"] == sum(au[f"class.{c}.images"] for c in card["classes"])
    assert au["rejected.augmented_copy"] == split["train_augmented"] and au["rejected.val"] == ev["val_images"]
    assert au["issues"] == sum(au[f"class.{c}.issues"] for c in card["classes"]) == len(
        pd.read_parquet(project / "data/audit/label_issues.parquet").query("issue"))
    assert au["review.thumbnails"] == min(au["issues"], 24) == len(list((project / "data/audit/review").glob("*.jpg")))
    assert au["annotators.demo.skipped"] == "only 1 labeller (keywords) gives probe classes here"
    assert au["annotators.horde.skipped"] == "absent: no predictions" and au == pytest.approx(metrics(project, "audit"), abs=1e-6)

    qu = quantify.main(project)
    assert qu["demo.images"] == pr["demo.kept"] and qu["horde.absent"] is True and qu["default_method"] in qu_methods(qu)
    prevalence = pd.read_csv(project / "plots/prevalence.csv")
    for _, estimate in prevalence.groupby("method"):
        assert estimate["share"].sum() == pytest.approx(1.0, abs=1e-3)
        assert ((estimate["lo"] <= estimate["share"] + 1e-6) & (estimate["share"] <= estimate["hi"] + 1e-6)).all()
    assert qu["demo.shift_rows"] == ev["val_images"] + card["split"]["near_duplicates_removed"]  # demo minus training images
    assert qu == pytest.approx(metrics(project, "quantify"), abs=1e-6)
    trends = pd.read_csv(project / "plots/trends.csv", dtype={"month": str})
    assert qu["demo.trend.months"] == trends["month"].nunique() >= 2  # the demo's synthetic dates span months
    assert trends.groupby("month")["share"].sum().tolist() == pytest.approx([1.0] * qu["demo.trend.months"], abs=1e-3)
    assert trends.drop_duplicates("month")["images"].sum() + qu["demo.trend.images_in_small_months"] \
        + qu["demo.trend.images_undated"] == qu["demo.images"]
    first = trends.iloc[0]
    assert qu[f"demo.trend.{first.month}.{first['style']}"] == pytest.approx(first.share, abs=1e-6)
    models = pd.read_csv(project / "plots/generator_prevalence.csv")  # one model made every demo image
    default = prevalence[prevalence["default"]].set_index("style")["share"]
    assert set(models["generator"]) == {"demo-filters"} and (models["images"] == qu["demo.images"]).all()
    assert models.set_index("style")["share"].to_dict() == pytest.approx(default.to_dict(), abs=1e-6)
    assert qu["demo.generator.unknown"] == 0 and qu["demo.generator.demo-filters.images"] == qu["demo.images"]
    assert pd.read_csv(project / "plots/generator_differences.csv").empty  # one model: nothing to compare

    ak = asked.main(project)
    assert ak["demo.in"] == ak["demo.kept"] + ak["demo.rejected"] and ak["demo.kept"] == pr["demo.kept"]
    assert ak["horde.absent"] is True and ak["demo.names_a_style.share"] == 1.0  # demo prompts name their style
    rows = pd.read_parquet(project / "data/asked/demo.parquet")
    table, rates = pd.read_csv(project / "plots/asked_shown.csv"), pd.read_csv(project / "plots/follow_rates.csv")
    assert table["images"].sum() == rows["asked_styles"].map(len).sum() and set(rows["asked_by"]) == {"keywords"}
    for r in rates[rates["rated"]].itertuples():
        asking = rows[rows["asked_styles"].map(lambda styles, s=r.style: s in styles)]
        assert r.prompts == len(asking) and r.raw == pytest.approx((asking["shown"] == r.style).mean(), abs=1e-6)
        assert r.raw_lo <= r.raw + 1e-6 and r.raw <= r.raw_hi + 1e-6
        assert ak[f"demo.follow.{r.style}.adjusted"] == pytest.approx(r.adjusted, abs=1e-6)
    assert ak["demo.styles_rated"] == rates["rated"].sum() >= 1 and ak == pytest.approx(metrics(project, "asked"), abs=1e-6)

    mp = map.main(project)
    assert mp["demo.kept"] == pr["demo.kept"] == mp["explorer_points"] and (project / "data/explore/index.html").exists()
    report.main(project)
    page = (project / "plots/report.html").read_text()
    assert "<h2>demo</h2>" in page and "absent" in page.split("<h2>horde</h2>")[1]
    assert f"style prevalence: {qu['default_method']} with its 95% interval" in page and "Label audit (cleanlab)" in page
    assert 'class="warning"' not in page  # demo is the training corpus: no shift warning


def test_a_source_that_may_not_be_redistributed_leaves_only_aggregates(project):
    """JourneyDB's terms: no thumbnail, prompt or per-image row of it in the explorer, report or any git-tracked file."""
    params_file = project / "params.yaml"
    kept = params_file.read_text()
    try:
        raw = yaml.safe_load(kept)
        raw["sources"]["demo"]["redistribute"] = False
        params_file.write_text(yaml.safe_dump(raw))
        au, mp = audit.main(project), map.main(project)
        quantify.main(project)
        report.main(project)
        assert au["review.withheld"] is True and au["review.thumbnails"] == 0
        assert mp["demo.explorer_withheld"] is True and not any((project / "data/explore").iterdir())
        page = (project / "plots/report.html").read_text()
        assert "data:image/jpeg" not in page and "platform=demo" not in page and "No label issue found." in page
        ids = set(pd.read_parquet(project / "data/predict/demo.parquet")["image_id"])
        names = {i.split("/", 1)[1] for i in ids}
        prompts = set(shards.read_dir(project / "data/sample/demo", columns=["prompt"])["prompt"])
        for shared in [*project.glob("plots/**/*.*"), *project.glob("metrics/*.json")]:  # git-tracked outputs
            text = shared.read_text(errors="ignore") if shared.suffix != ".png" else ""
            leaked = [v for v in (*ids, *names, *prompts) if v in text]
            assert not leaked, (shared, leaked[:3])
        assert (project / "data/predict/demo.parquet").exists()  # per-image data stays in DVC-cached outputs
    finally:
        params_file.write_text(kept)


def test_stage_reading_an_undeclared_param_fails(project, monkeypatch):
    """The guard the chain above relies on: a stage sees only its dvc.yaml params."""
    from stylemap import stagespec

    spec = stagespec.stage_spec("balance")
    monkeypatch.setattr(stagespec, "stage_spec", lambda stage, root=".": {**spec, "params": ["seed", "balance"]})
    with pytest.raises(stagespec.UndeclaredParam, match="stage 'balance' reads param 'train_source'"):
        balance.main(project)


def test_an_absent_train_source_is_an_error_before_any_work(tmp_path):
    write_params(tmp_path, replace={"sources": {"demo": {"kind": "local", "path": "gone", "optional": True}},
                                    "platforms": ["demo"]})
    with pytest.raises(ValueError, match="train_source 'demo' is absent"):
        sample.main(tmp_path)
    assert not list((tmp_path / "data/sample").iterdir())


def test_a_removed_source_is_pruned_from_every_persisted_output(tmp_path):
    demo_src = {"kind": "local", "path": "data/demo"}
    overrides = {"demo.crops_per_subject": 1, "demo.side": 64, "label.run_llm": False}
    write_params(tmp_path, overrides, replace={"sources": {"demo": demo_src, "copy": demo_src}, "platforms": ["demo"]})
    demo.main(tmp_path)
    for stage in (sample, describe, label):
        stage.main(tmp_path)
    assert (tmp_path / "data/describe/copy").is_dir() and (tmp_path / "data/labels/copy.parquet").exists()
    write_params(tmp_path, overrides, replace={"sources": {"demo": demo_src}, "platforms": ["demo"]})
    for stage in (sample, describe, label):
        stage.main(tmp_path)
    assert not (tmp_path / "data/sample/copy").exists() and not (tmp_path / "data/describe/copy").exists()
    assert not (tmp_path / "data/labels/copy.parquet").exists() and "copy" not in metrics(tmp_path, "label")


def test_a_source_gone_absent_leaves_no_shards_behind(tmp_path):
    overrides = {"demo.crops_per_subject": 1, "demo.side": 64}
    sources = {"demo": {"kind": "local", "path": "data/demo"}, "extra": {"kind": "local", "path": "data/demo", "optional": True}}
    write_params(tmp_path, overrides, replace={"sources": sources, "platforms": ["demo"]})
    demo.main(tmp_path)
    sample.main(tmp_path)
    assert (tmp_path / "data/sample/extra").is_dir()
    sources["extra"]["path"] = "data/gone"
    write_params(tmp_path, overrides, replace={"sources": sources, "platforms": ["demo"]})
    assert sample.main(tmp_path)["extra"] == {"absent": True}
    assert not (tmp_path / "data/sample/extra").exists()
