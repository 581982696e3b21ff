"""Asked versus shown: prompt styles from the prompt alone, the asked x shown table, and follow rates whose
adjusted form takes the probe's own confusions out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylemap.labels.taxonomy import load_taxonomy
from stylemap.model import asked, quantify
from stylemap.paths import REPO

CLASSES = ["anime", "oil_painting", "watercolor"]


def one_hot(labels) -> np.ndarray:
    return np.eye(len(CLASSES))[np.asarray(labels)]


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(REPO / "stylemap/labels/taxonomy.yaml")


def test_a_prompt_asks_for_the_styles_it_names_first_mention_first_and_none_when_it_names_none(taxonomy):
    prompts = pd.Series(["a watercolor fox, then oil on canvas, anime, pixel art", "a cat on a mat", None])
    styles = asked.asked_styles(prompts, taxonomy, max_styles=3)
    assert styles == [["watercolor", "oil_painting", "anime"], [], []]
    table = asked.crosstab(styles, ["anime", "oil_painting", "oil_painting"])
    assert table.to_dict("records") == [
        {"asked": "anime", "shown": "anime", "images": 1}, {"asked": "none", "shown": "oil_painting", "images": 2},
        {"asked": "oil_painting", "shown": "anime", "images": 1}, {"asked": "watercolor", "shown": "anime", "images": 1}]


def test_the_adjusted_follow_rate_takes_the_probes_confusion_out_of_the_raw_one():
    """The probe calls 30 % of watercolours oil paintings on the validation split. Every image asking for a
    watercolour truly is one and shows it the same way: raw 70 %, adjusted ~100 %."""
    y = np.repeat([0, 1, 2], 100)
    predicted = y.copy()
    predicted[200:230] = 1  # 30 of 100 watercolours called oil painting
    val_probs = one_hot(predicted)
    shown = np.array([2] * 70 + [1] * 30 + [0] * 5)  # 100 asking watercolor, 5 asking anime
    prompts = [["watercolor"]] * 100 + [["anime"]] * 5
    resamples = quantify.validation_resamples(y, 50, seed=0)
    rates = asked.follow_rates(prompts, one_hot(shown), val_probs, y, CLASSES, resamples, np.random.default_rng(0),
                               min_prompts=10, level=0.9).set_index("style")
    water = rates.loc["watercolor"]
    assert water["prompts"] == 100 and water["raw"] == pytest.approx(0.7) and water["adjusted"] == pytest.approx(1.0)
    assert water["raw_lo"] <= 0.7 <= water["raw_hi"] and water["adjusted_lo"] <= 1.0 <= water["adjusted_hi"] + 1e-9
    assert (water["substitute"], water["substitute_share"]) == ("oil_painting", pytest.approx(0.3))
    assert water["substitute_lo"] < 0.3 < water["substitute_hi"]
    anime = rates.loc["anime"]  # 5 prompts < min_prompts: counted, no rate
    assert anime["prompts"] == 5 and not anime["rated"] and np.isnan(anime["raw"]) and np.isnan(anime["adjusted"])
    assert "oil_painting" not in rates.index  # no prompt asks for it


def test_naming_share_and_the_gold_follow_rates_check_the_probe_against_what_was_rendered():
    styles = [["anime"], ["anime"], [], ["watercolor"]]
    share = asked.naming_share(styles, np.random.default_rng(0), 200, 0.95)
    assert share["share"] == 0.75 and 0.0 <= share["lo"] <= 0.75 <= share["hi"] <= 1.0
    gold = pd.Series(["anime", "photography", None, "watercolor"])
    follow = asked.gold_follow(styles, gold, ["anime", "anime", "anime", "oil_painting"]).set_index("style")
    assert follow.loc["anime"].tolist() == [2, 0.5, 1.0]  # the probe says followed twice; the gold, once
    assert follow.loc["watercolor"].tolist() == [1, 1.0, 0.0]
