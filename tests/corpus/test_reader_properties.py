"""Property, for the JourneyDB and folder readers (DiffusionDB's is tests/stages/test_sample_properties.py): on any
corpus with random text and type faults, sample raises nothing, reconciles in = kept + rejected, rejects exactly
the faulty rows with each fault's reason, keeps every clean row, counts every lossless conversion, and gives the
same result twice."""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stylemap import shards
from stylemap.corpus.readers import journeydb
from stylemap.corpus.sampling import sample_source
from stylemap.params import Source
from tests.corpus.test_hostile import GOOD, _gzip_tar, png
from tests.support.fixtures import make_params, write_journeydb

JDB_FAULTS = {  # fault: the reason its row is rejected ("kept": none)
    "none": "kept", "surrogate_prompt": "bad_text", "surrogate_path": "bad_text", "surrogate_style": "bad_text",
    "latin1_line": "bad_annotation", "not_json": "bad_annotation", "long_line": "bad_annotation",
    "prompt_number": "bad_field", "image_missing": "image_missing",
}
FOLDER_FAULTS = {
    "none": "kept", "latin1_name": "bad_text", "surrogate_prompt": "bad_text", "prompt_number": "bad_field",
    "seed_text": "bad_field", "timestamp_garbage": "bad_field", "no_prompt_row": "empty_prompt",
    "not_a_file": "not_a_file", "timestamp_ns": "kept", "timestamp_epoch_ms": "kept",
}
CONVERTS = {"timestamp_ns": "timestamp[ns]", "timestamp_epoch_ms": "timestamp[epoch ms]"}


def jdb_line(i: int, fault: str) -> bytes:
    name, prompt = f"000/img{i:03d}.png", GOOD
    entry = {"img_path": name, "prompt": prompt, "Task1": {"Style": ["watercolor"]}}
    if fault == "latin1_line":
        return json.dumps(entry).encode().replace(b"tabby", b"tabb\xe9")
    if fault == "not_json":
        return json.dumps(entry).encode()[:-1]
    if fault == "long_line":  # random letters: a run of one letter would trip the gzip bomb bound instead
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
        entry["prompt"] = GOOD + " " + letters[np.random.default_rng(i).integers(0, 26, journeydb.MAX_LINE)].tobytes().decode()
    entry |= {"surrogate_prompt": {"prompt": "a \udc80 cat"}, "surrogate_path": {"img_path": f"000/im\udc80{i}.png"},
              "surrogate_style": {"Task1": {"Style": ["oil \ud800"]}}, "prompt_number": {"prompt": 7}}.get(fault, {})
    return json.dumps(entry).encode()


def build_jdb(root: Path, faults: list[str]) -> Source:
    members = {f"000/img{i:03d}.png": png(i) for i, f in enumerate(faults) if f != "image_missing"}
    write_journeydb(root, [], {0: members})
    body = b"".join(jdb_line(i, f) + b"\n" for i, f in enumerate(faults))
    _gzip_tar(root / "data/train" / journeydb.ANNOTATIONS["train"], "train.jsonl", [body], len(body))
    return Source(kind="local", path=str(root), format="journeydb")


def build_folder(root: Path, faults: list[str]) -> Source:
    root.mkdir(parents=True)
    lines = []
    for i, fault in enumerate(faults):
        name = f"img{i:03d}.png" if fault != "latin1_name" else os.fsdecode(f"img{i:03d}\xe9.png".encode("latin-1"))
        if fault == "not_a_file":
            os.mkfifo(root / name)
        else:
            (root / name).write_bytes(png(i))
        row = {"file_name": name, "prompt": GOOD, "seed": i}
        row |= {"surrogate_prompt": {"prompt": "a \udc80 cat"}, "prompt_number": {"prompt": 3},
                "seed_text": {"seed": "many"}, "timestamp_garbage": {"timestamp": "someday"},
                "timestamp_ns": {"timestamp": "2022-08-03T10:00:00.123456789Z"},
                "timestamp_epoch_ms": {"timestamp": 1_659_520_800_123}}.get(fault, {})
        if fault != "no_prompt_row":
            lines.append(json.dumps(row).encode("utf-8", "surrogateescape") if fault == "latin1_name"
                         else json.dumps(row).encode())
    (root / "prompts.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    return Source(kind="local", path=str(root), format="folder")


def run(src: Source, out: Path):
    drawn, tally, *_ = sample_source("x", src, make_params({"sample.n": 1000}).sample, 0, out, "test")
    tally.report(drawn, "x")  # in = kept + rejected, or it raises
    return drawn, tally, shards.read_dir(out)


def check(build, reasons: dict[str, str], faults: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = build(tmp / "corpus", faults)
        drawn, tally, kept = run(src, tmp / "a")
        assert drawn == len(faults) and len(kept) == tally.kept
        expected = Counter(reasons[f] for f in faults)
        assert Counter({**tally.counts, "kept": tally.kept}) - Counter() == expected - Counter()
        clean = {i for i, f in enumerate(faults) if reasons[f] == "kept"}
        assert {int(name[-7:-4]) for name in kept.get("image_name", [])} == clean
        assert dict(tally.converted_from()) == dict(Counter(CONVERTS[f] for f in faults if f in CONVERTS))
        drawn2, tally2, kept2 = run(src, tmp / "b")
        assert (drawn2, tally2.counts, tally2.rows) == (drawn, tally.counts, tally.rows)
        assert kept2.equals(kept)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.lists(st.sampled_from(sorted(JDB_FAULTS)), min_size=1, max_size=10))
def test_journeydb_survives_text_and_type_faults(faults):
    check(build_jdb, JDB_FAULTS, faults)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.lists(st.sampled_from(sorted(FOLDER_FAULTS)), min_size=1, max_size=10))
@example(faults=["no_prompt_row"])  # a prompts.jsonl of no line: zero rows, not a missing-column error
def test_folder_survives_text_and_type_faults(faults):
    check(build_folder, FOLDER_FAULTS, faults)
