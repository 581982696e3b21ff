"""The folder reader: real images in nested folders with a prompts file, sampled end to end and on bad inputs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from stylemap import shards
from stylemap.corpus import sampling
from stylemap.corpus.readers import folder
from stylemap.corpus.readers import open_corpus
from stylemap.corpus.readers.base import CorpusError
from stylemap.params import Source
from tests.corpus.conftest import encode
from tests.support.fixtures import same_pixels

SUFFIXES = ["png", "jpg", "webp", "JPG"]  # upper case too: a camera's name for a JPEG


def write_folder(root: Path, horde_images, prompts: str = "csv") -> dict[str, tuple[bytes, str]]:
    """The images under nested folders and a prompts file keyed by relative path; returns {name: (bytes, prompt)}."""
    written = {}
    for i, (name, image, prompt) in enumerate(horde_images):
        suffix = SUFFIXES[i % len(SUFFIXES)]
        rel = f"{['', 'a/', 'a/b/'][i % 3]}{Path(name).stem}.{suffix}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(encode(image, suffix.lower()))
        written[rel] = ((root / rel).read_bytes(), prompt)
    table = pd.DataFrame({"file_name": list(written), "prompt": [p for _, p in written.values()]})
    if prompts == "csv":
        table.to_csv(root / "prompts.csv", index=False)
    else:
        table.to_json(root / "prompts.jsonl", orient="records", lines=True)
    return written


def run(root: Path, s, out: Path):
    drawn, tally, ignored, _, _ = sampling.sample_source("f", Source(kind="local", path=str(root), format="folder"), s, 0,
                                                      out, code="test")
    tally.report(drawn, "f")  # in = kept + rejected, or it raises
    return drawn, tally, ignored, shards.read_dir(out)


@pytest.mark.parametrize("prompts", ["csv", "jsonl"])
def test_every_image_with_a_prompt_is_kept(prompts, horde_images, sample_params, tmp_path, monkeypatch):
    monkeypatch.setattr(folder, "PART_SIZE", 10)  # several parts from a few images
    written = write_folder(tmp_path / "images", horde_images, prompts)
    drawn, tally, ignored, kept = run(tmp_path / "images", sample_params, tmp_path / "out")
    assert (drawn, tally.kept, tally.rejected, ignored) == (len(written), len(written), 0, 0)
    assert dict(zip(kept["image_name"], kept["prompt"])) == {n: p for n, (_, p) in written.items()}
    assert all(same_pixels(b, written[n][0]) for n, b in zip(kept["image_name"], kept["image_bytes"]))
    assert sorted(kept["part_id"].unique()) == list(range(5))


def test_bad_inputs_are_counted_rejects(horde_images, sample_params, tmp_path):
    root = tmp_path / "images"
    written = write_folder(root, horde_images[:4])
    good = next(iter(written.values()))[0]
    (root / "no_prompt.png").write_bytes(good)  # no prompt row: empty_prompt
    (root / "garbled.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 40)
    (tmp_path / "secret.png").write_bytes(good)
    (root / "a/out.png").symlink_to(tmp_path / "secret.png")
    (root / "a/in.png").symlink_to(root / "no_prompt.png")  # a link inside the folder is read
    os.mkfifo(root / "pipe.png")
    (root / "back\\slash.png").write_bytes(good)  # a Windows separator: a name no other platform reads alike
    (root / "notes.txt").write_text("not an image")
    (root / "dir.png").mkdir()  # a folder named like an image: walked into, not read
    prompt = horde_images[0][2]
    extra = ["garbled.jpg", "a/out.png", "a/in.png", "pipe.png", "back\\slash.png", "ghost.png", "gone/also.png"]
    table = pd.concat([pd.read_csv(root / "prompts.csv"), pd.DataFrame({"file_name": extra, "prompt": prompt})])
    table.to_csv(root / "prompts.csv", index=False)
    drawn, tally, ignored, kept = run(root, sample_params, tmp_path / "out")
    assert dict(tally.counts) == {"empty_prompt": 1, "undecodable": 1, "bad_image_path": 2, "not_a_file": 1}
    assert sorted(kept["image_name"]) == sorted([*written, "a/in.png"])
    reasons = {r["image_name"]: (r["reason"], r["detail"]) for r in tally.rows}
    assert reasons["a/out.png"] == ("bad_image_path", "a/out.png leads outside the corpus folder")
    assert reasons["back\\slash.png"] == ("bad_image_path", "'back\\\\slash.png'")
    assert reasons["pipe.png"][0] == "not_a_file" and reasons["no_prompt.png"][0] == "empty_prompt"
    assert ignored == 3  # notes.txt; the prompt rows of ghost.png and gone/also.png


def test_prompt_files_that_cannot_be_used_are_corpus_errors(tmp_path):
    src = Source(kind="local", path=str(tmp_path), format="folder")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(CorpusError, match="no image files"):
        open_corpus(src).metadata()
    (tmp_path / "x.png").write_bytes(b"png")
    (tmp_path / "prompts.csv").write_text("file_name,prompt\nx.png,a cat\nx.png,a dog\n")
    with pytest.raises(CorpusError, match=r"1 file names have more than one row, e.g. 'x.png'"):
        open_corpus(src).metadata()
    (tmp_path / "prompts.csv").write_text("name,text\nx.png,a cat\n")
    with pytest.raises(CorpusError, match=r"missing columns \['file_name', 'prompt'\]"):
        open_corpus(src).metadata()
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"file_name": "x.png", "prompt": "a cat"}) + "\n")
    with pytest.raises(CorpusError, match="both prompts.csv and prompts.jsonl"):
        open_corpus(src).metadata()
    (tmp_path / "prompts.csv").unlink()
    (tmp_path / "prompts.jsonl").write_text("{not json\n")
    with pytest.raises(CorpusError, match="prompts.jsonl: not readable as jsonl"):
        open_corpus(src).metadata()


def test_prompt_file_fields_and_identity(tmp_path):
    """A prompts file's cfg and timestamp feed sample's filters and trends; a changed file changes the identity."""
    (tmp_path / "x.png").write_bytes(b"png")
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"file_name": "x.png", "prompt": "a cat", "cfg": 7.5,
                                                        "timestamp": "2023-05-01T10:00:00Z", "likes": 3}) + "\n")
    src = Source(kind="local", path=str(tmp_path), format="folder")
    corpus = open_corpus(src)
    meta = corpus.metadata()
    assert meta.loc[0, ["image_name", "part_id", "prompt", "cfg", "timestamp", "reject"]].tolist() == [
        "x.png", 0, "a cat", 7.5, "2023-05-01T10:00:00Z", ""]
    before = corpus.identity()
    (tmp_path / "x.png").write_bytes(b"png, changed")
    assert open_corpus(src).identity() != before
