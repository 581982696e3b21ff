"""`stylemap predict`: top-k styles per file from the exported model, per-file errors, exit status."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from stages import embed, train
from stylemap import cli
from stylemap.params import REPO
from stylemap.testing import draw, make_project


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    make_project(root, per_style=12, n_augmented=4, overrides={"train.epochs": 80})
    embed.main(root)
    train.main(root)
    return root / "data/model"


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(42)
    folder = tmp_path / "imgs"
    (folder / "nested").mkdir(parents=True)
    draw("sketch", rng).save(folder / "a_sketch.png")
    draw("pixel_art", rng).save(folder / "nested" / "b_pixel.webp", lossless=True)
    (folder / "notes.txt").write_text("not an image, not picked up from a folder")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def test_predict_folder_prints_top_k_and_reports_bad_files(model_dir, images, tmp_path, capsys):
    out = tmp_path / "out.json"
    missing = tmp_path / "missing.png"
    code = cli.main(["predict", str(images), str(missing), "--model-dir", str(model_dir), "--top-k", "2", "--json", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    results = {r["path"].split("/")[-1]: r for r in json.loads(out.read_text())}
    assert set(results) == {"a_sketch.png", "b_pixel.webp", "broken.jpg", "missing.png"}  # notes.txt skipped
    assert results["a_sketch.png"]["styles"][0]["style"] == "sketch"
    assert results["b_pixel.webp"]["styles"][0]["style"] == "pixel_art"
    for name in ("a_sketch.png", "b_pixel.webp"):
        probs = [s["prob"] for s in results[name]["styles"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0001
    assert results["broken.jpg"]["error"] == "undecodable" and results["broken.jpg"]["styles"] == []
    assert results["missing.png"]["error"].startswith("unreadable")
    assert "a_sketch.png: sketch " in stdout and "broken.jpg: error: undecodable" in stderr


def test_all_files_failing_exits_non_zero(model_dir, images, capsys):
    assert cli.main(["predict", str(images / "broken.jpg"), "--model-dir", str(model_dir)]) == 1
    assert "error: undecodable" in capsys.readouterr().err


def test_missing_model_dir_is_named(images, tmp_path, capsys):
    assert cli.main(["predict", str(images), "--model-dir", str(tmp_path / "nowhere")]) == 2
    assert "model_card.json not found" in capsys.readouterr().err


def test_console_entry_point_runs(model_dir, images):
    run = subprocess.run([sys.executable, "-m", "stylemap.cli", "predict", str(images / "a_sketch.png"),
                          "--model-dir", str(model_dir), "--top-k", "1"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r".*a_sketch\.png: sketch [01]\.\d{3}", run.stdout.strip()), run.stdout
