"""`stylemap predict`: top-k styles per file from the exported model, per-file errors, exit status."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages import embed, evaluate, train
from stylemap import cli
from stylemap.paths import REPO
from tests.support.fixtures import draw, make_project


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    make_project(root, per_style=12, n_augmented=4, overrides={"train.epochs": 80})
    embed.main(root)
    train.main(root)
    evaluate.main(root)
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
    assert "notes.txt: skipped: suffix .txt is not an image suffix" in stderr


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


def test_special_and_oversized_files_are_refused_unread(model_dir, images, tmp_path, capsys):
    import os
    import shutil

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block forever
    jfif = tmp_path / "photo.jfif"
    shutil.copy(images / "a_sketch.png", jfif)
    code = cli.main(["predict", str(fifo), str(images / "a_sketch.png"), str(jfif), "--model-dir", str(model_dir),
                     "--max-bytes", str((images / "a_sketch.png").stat().st_size - 1)])
    err = capsys.readouterr().err
    assert code == 1
    assert "pipe.png: error: refused: not a regular file" in err
    assert "a_sketch.png: error: refused: too large" in err and "photo.jfif: error: refused: too large" in err
    capsys.readouterr()
    found, skipped = cli.collect([str(tmp_path)])
    assert jfif in found and jfif not in [f for f, _ in skipped]  # .jfif (JPEG) is an image suffix


@pytest.mark.parametrize("fault", ["card_without_embedding", "truncated_probe", "missing_weights", "missing_calibration"])
def test_model_directory_faults_exit_2_with_one_line(model_dir, images, tmp_path, capsys, fault):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    if fault == "card_without_embedding":
        (broken / "model_card.json").write_text(json.dumps({"classes": ["a", "b"]}))
    elif fault == "truncated_probe":
        probe = broken / "probe.safetensors"
        probe.write_bytes(probe.read_bytes()[:100])
    elif fault == "missing_calibration":
        (broken / "calibration.json").unlink()
    else:
        (broken / "probe.safetensors").unlink()
    assert cli.main(["predict", str(images), "--model-dir", str(broken)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "skipped" not in line]
    assert len(err) == 1 and err[0].startswith(f"stylemap: model directory {broken}:"), err


def test_json_into_a_missing_folder_is_an_error_before_any_work(images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", str(images), "--model-dir", str(tmp_path / "nowhere"), "--json", str(tmp_path / "no/out.json")])
    assert exit_.value.code == 2 and "does not exist" in capsys.readouterr().err


# ---------- hostile inputs (issue 24, class 10 and the CLI's text class) ----------

def test_a_file_too_large_for_memory_is_refused_and_the_others_classified(model_dir, images, monkeypatch, capsys):
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "a_sketch.png":
            raise MemoryError
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert cli.main(["predict", str(images), "--model-dir", str(model_dir)]) == 0
    out, err = capsys.readouterr()
    assert "a_sketch.png: error: refused: too large to hold in memory" in err and "b_pixel.webp: " in out


def test_an_unlistable_subfolder_is_reported_not_skipped_silently(images, monkeypatch):
    locked = images / "nested"
    real = os.scandir

    def scandir(path="."):
        if Path(path) == locked:  # root may list anything: chmod 000 would not lock it in CI
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found, skipped = cli.collect([str(images)])
    assert (locked, "cannot be listed: Permission denied") in skipped
    assert images / "nested" / "b_pixel.webp" not in found and images / "a_sketch.png" in found


@pytest.mark.parametrize("target", ["folder", "missing_folder", "read_only"])
def test_an_unwritable_json_target_is_refused_before_any_work(images, tmp_path, capsys, target, monkeypatch):
    out = {"folder": tmp_path, "missing_folder": tmp_path / "no/out.json", "read_only": tmp_path / "ro.json"}[target]
    if target == "read_only":
        out.write_text("")
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != out)  # root writes through chmod
    with pytest.raises(SystemExit) as stop:  # a model dir that does not exist: refused before it is read
        cli.main(["predict", str(images), "--model-dir", str(tmp_path / "nowhere"), "--json", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and re.search(r"--json .+: (is a folder|folder .+ does not exist|is not writable)", err)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this machine")
def test_a_full_device_as_json_target_is_one_line_and_exit_2(model_dir, images, capsys):
    assert cli.main(["predict", str(images), "--model-dir", str(model_dir), "--json", "/dev/full"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "stylemap: --json /dev/full: cannot be written: No space left on device" and "Traceback" not in err


def test_file_names_that_are_not_utf8_print_escaped_and_reach_the_json(model_dir, images, tmp_path, capsys):
    """capsys's stdout is strict UTF-8, as a pipe under LANG=C.UTF-8 is: printing the raw name would crash."""
    latin1 = os.fsdecode(bytes(images / "nested") + b"/caf\xe9.png")
    shutil.copy(images / "a_sketch.png", latin1)
    odd = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.png")  # given as an argument, and missing
    out = tmp_path / "out.json"
    assert cli.main(["predict", str(images), odd, "--model-dir", str(model_dir), "--json", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert "nested/caf\\xe9.png: " in printed and "\\xff\\xfe.png: error: unreadable" in err
    results = {r["path"].rpartition("/")[2]: r for r in json.loads(out.read_text())}
    assert results["caf\\xe9.png"]["styles"] == results["a_sketch.png"]["styles"]  # the same image, classified
    assert results["\\xff\\xfe.png"]["error"].startswith("unreadable")
