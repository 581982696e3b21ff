"""The CPU profile's study on the real Horde images: its encoder beats the weight-free statistics on the gold.

Runs the stages from demo to evaluate in a temporary project with the repository's params (the LLM labeller
off: the CPU profile trains on keyword labels, so the LLM's agreement figures do not touch the probe), on the
shared Horde corpus. A behaviour check of the default encoder, not a timing; a couple of minutes, so slow.
"""
from __future__ import annotations

import pytest

from stages import balance, demo, describe, embed, evaluate, label, repackage, sample, train
from tests.support.fixtures import write_params

pytestmark = pytest.mark.slow


def test_the_cpu_profiles_encoder_beats_style_stats_on_the_gold_it_never_trained_on(tmp_path, horde):
    p = write_params(tmp_path, {"repackage.source": str(horde), "label.run_llm": False, "embed.loader_workers": 0})
    for stage in (demo, repackage, sample, describe, label, balance, embed, train):
        stage.main(tmp_path)
    metrics = evaluate.main(tmp_path)
    encoder, baseline = p.embed.backend, p.evaluate.baseline_encoder
    assert (encoder, baseline) == ("efficientnet_lite", "style_stats")
    assert metrics["gold.in"] == metrics["gold.kept"] == 101  # every gold image sampled, embedded and scored
    assert metrics[f"gold.{encoder}.top1"] > metrics[f"gold.{baseline}.top1"]
    assert metrics[f"gold.{encoder}.macro_f1"] > metrics[f"gold.{baseline}.macro_f1"]
    assert metrics[f"gold.{encoder}.shared_macro_f1"] > metrics[f"gold.{baseline}.shared_macro_f1"]
    assert metrics[f"gold.{encoder}.top1.lo"] > 1 / 8  # above uniform chance over the gold's 8 classes
