"""The model that made each image (sample's `generator`): a source's constant, a table column the params name, or
a Midjourney prompt's --v / --niji, read before the strip; unknown stays null and is counted."""
from __future__ import annotations

import pandas as pd
import pytest

from stylemap import shards
from stylemap.corpus.readers.base import CorpusError
from stylemap.corpus.sampling import sample_source
from stylemap.corpus.syntax import midjourney_model
from stylemap.params import Source
from tests.corpus.test_folder import write_folder
from tests.support.fixtures import horde_rows, write_journeydb


@pytest.mark.parametrize(("prompt", "model"), [
    ("a fox in the snow --ar 16:9 --v 5.2", "midjourney-v5.2"), ("a fox --version 6 --stylize 750", "midjourney-v6"),
    ("a fox --niji 5", "niji-5"), ("a fox --niji", "niji"), ("a fox —v 4", "midjourney-v4"),
    ("a fox --v 4 --q 2 --v 5", "midjourney-v5"),  # the last one given wins, as in Midjourney
    ("a fox --video", None), ("a fox --v", None), ("a fox, version 5 of it", None), ("a fox", None)])
def test_a_midjourney_prompt_names_its_model_in_its_parameters(prompt, model):
    assert midjourney_model(prompt) == model


def sampled(root, sample_params, out, **source) -> pd.DataFrame:
    drawn, tally, *_ = sample_source("g", Source(kind="local", path=str(root), **source), sample_params, 0, out, "t")
    tally.report(drawn, "g")
    return shards.read_dir(out).set_index("image_name")


def models(kept: pd.DataFrame, names: list[str]) -> list[str | None]:
    return [None if pd.isna(kept.loc[n, "generator"]) else kept.loc[n, "generator"] for n in names]


def test_a_folder_tables_column_names_each_images_model_and_a_missing_value_stays_unknown(horde_images, sample_params,
                                                                                            tmp_path):
    root = tmp_path / "images"
    written = list(write_folder(root, horde_images[:4]))
    table = pd.read_csv(root / "prompts.csv")
    table["model"] = ["SDXL 1.0", "", "Dreamshaper", "SDXL 1.0"]
    table.to_csv(root / "prompts.csv", index=False)
    kept = sampled(root, sample_params, tmp_path / "out", format="folder", generator_column="model")
    assert models(kept, written) == ["SDXL 1.0", None, "Dreamshaper", "SDXL 1.0"]
    constant = sampled(root, sample_params, tmp_path / "out2", format="folder", generator="stable-diffusion-1.x")
    assert set(constant["generator"]) == {"stable-diffusion-1.x"}
    with pytest.raises(CorpusError, match=r"no column 'modle' \(sources.<name>.generator_column\)"):
        sampled(root, sample_params, tmp_path / "out3", format="folder", generator_column="modle")
    with pytest.raises(ValueError, match="generator_column names a column of an img2dataset or folder table"):
        Source(kind="local", path=str(root), format="diffusiondb", generator_column="model")


def test_journeydb_prompts_give_their_midjourney_model_and_are_stored_without_parameters(horde, sample_params,
                                                                                          tmp_path):
    rows = horde_rows(3)
    suffixes = [" --ar 3:2 --v 5.2", " --niji 5", ""]
    lines = [{"img_path": f"000/{r['image_name']}", "prompt": r["prompt"] + end,
              "Task1": {"Style": [], "Content": [], "Atmosphere": [], "Others": []}} for r, end in zip(rows, suffixes)]
    write_journeydb(tmp_path / "jdb", lines, {0: {f"000/{r['image_name']}": r["data"] for r in rows}})
    kept = sampled(tmp_path / "jdb", sample_params, tmp_path / "out", format="journeydb", syntax="midjourney")
    names = [f"000/{r['image_name']}" for r in rows]
    assert models(kept, names) == ["midjourney-v5.2", "niji-5", None]
    assert [kept.loc[n, "prompt"] for n in names] == [" ".join(r["prompt"].split()) for r in rows]
