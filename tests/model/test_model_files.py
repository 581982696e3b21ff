"""Issue 24, class 9: model files and params are validated where they are read, each fault one clear line (a
UserError: exit 2 from a stage), never a traceback or a silent NaN."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from stylemap.entry import UserError
from stylemap.model.probe import load_probe, load_temperature, save_probe
from stylemap.paths import REPO
from stylemap.profile import ParamsError, load
from tests.support.fixtures import raw_params, write_params

CLASSES = ["anime", "photography"]


def test_a_probe_with_nan_or_infinite_weights_is_refused(tmp_path):
    save_probe(tmp_path, np.ones((2, 4), np.float32), np.zeros(2, np.float32), CLASSES)
    assert load_probe(tmp_path)[2] == CLASSES
    for bad in (np.nan, np.inf):
        weight = np.ones((2, 4), np.float32)
        weight[1, 2] = bad
        save_probe(tmp_path, weight, np.zeros(2, np.float32), CLASSES)
        with pytest.raises(UserError, match="the probe holds NaN or infinite weights; rerun train"):
            load_probe(tmp_path)


@pytest.mark.parametrize(("text", "ok"), [("1", True), ("1.0", True), ("0.73", True), ("Infinity", False),
                                          ("NaN", False), ("0", False), ("-2.5", False), ('"1.5"', False),
                                          ("true", False), ("null", False)])
def test_a_calibration_temperature_is_any_finite_positive_number(tmp_path, text, ok):
    (tmp_path / "calibration.json").write_text(f'{{"temperature": {text}}}')
    if ok:
        assert load_temperature(tmp_path) == float(json.loads(text))
    else:
        with pytest.raises(UserError, match="temperature must be a finite positive number"):
            load_temperature(tmp_path)


@pytest.mark.parametrize(("section", "key"), [("sources", "size"), ("describe.vllm_args", "nfiles")])
def test_a_user_chosen_key_that_dvcs_run_cache_ignores_is_refused_at_load(tmp_path, section, key):
    raw = raw_params()
    *parents, last = section.split(".")
    node = raw
    for name in parents:
        node = node[name]
    node[last] = {**node[last], key: {"kind": "local", "path": "data/demo"} if section == "sources" else 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ParamsError, match=rf"key {section}\.{key} is named like one DVC's run cache leaves out of "
                                          r"its key \(nfiles and size"):
        load(tmp_path)


def test_a_missing_open_clip_checkpoint_ends_the_embed_stage_in_one_line_with_exit_2(tmp_path):
    write_params(tmp_path, {"embed.backend": "open_clip", "embed.arch": "ViT-S-32",
                            "embed.pretrained": str(tmp_path / "nowhere.pt")})
    done = subprocess.run([sys.executable, "-c", "import sys; from stages import embed; from stylemap import entry; "
                           f"entry.run(lambda: embed.main({str(tmp_path)!r}), 'embed')"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"stage embed: error: embed.pretrained: checkpoint file {tmp_path / 'nowhere.pt'} not found"]
