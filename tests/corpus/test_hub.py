"""The hf source through a local stand-in for the Hub: range reads keep exactly what a local read keeps and fetch
little more than the images read; whole parts are deleted once read unless kept; a stalled or misbehaving server
is retried a bounded number of times, then stops the stage in one line, and a fault that clears changes nothing."""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from stylemap import entry, shards
from stylemap.corpus import hub
from stylemap.corpus.sampling import sample_source
from stylemap.params import Source
from tests.support.fixtures import make_params
from tests.support.hub_server import FAULTS, HubServer

READ = {"undecodable"}  # rejects whose image was fetched: the corpus's only decode fault


def hf(server: HubServer, tmp_path: Path, **extra) -> Source:
    return Source(kind="hf", path="poloclub/diffusiondb", endpoint=server.endpoint, cache_dir=str(tmp_path / "cache"),
                  **extra)


def run(src: Source, out: Path, n: int):
    s = make_params({"sample.n": n}).sample
    result = sample_source("x", src, s, 0, out, "test")
    result.tally.report(result.drawn, "x")  # in = kept + rejected, or it raises
    return result, shards.read_dir(out)


def test_range_reads_keep_what_a_local_read_keeps_and_fetch_little_more_than_the_images(hub_corpus, tmp_path):
    root, meta = hub_corpus
    local, local_kept = run(Source(kind="local", path=str(root)), tmp_path / "local", n=60)
    with HubServer(root) as server:
        remote, remote_kept = run(hf(server, tmp_path), tmp_path / "hf", n=60)
    pd.testing.assert_frame_equal(local_kept, remote_kept)
    assert (remote.drawn, remote.tally.kept, remote.tally.counts) == (local.drawn, 60, local.tally.counts)

    # every byte the CDN sent: metadata.parquet, then per part opened its tail (end record, directory, part JSON,
    # and the slack after it), and per image read (kept, or fetched and undecodable) its local header, name, slack
    # and data
    opened = sorted((tmp_path / "hf" / "_parts").glob("*.json"))
    read = set()
    for marker in opened:
        tally = json.loads(marker.read_text())
        read |= {name for _, name in tally["kept_rows"]} | {r["image_name"] for r in tally["rows"] if r["reason"] in READ}
    tails = 0
    for marker in opened:
        part = marker.stem.split("-", 1)[1]  # r00-part-000001 -> part-000001
        with zipfile.ZipFile(root / "images" / f"{part}.zip") as zf:
            json_at = zf.getinfo(f"{part}.json").header_offset
        tails += max(hub.TAIL, (root / "images" / f"{part}.zip").stat().st_size - json_at) + hub.LOCAL_SLACK
    sizes = meta.set_index("image_name")["image_bytes"]
    members = sum(sizes[name] + 30 + len(name) + hub.LOCAL_SLACK for name in read)
    metadata = (root / "metadata.parquet").stat().st_size
    assert len(read) < len(meta) / 4 and server.traffic["cdn_bytes"] <= metadata + tails + members
    parts = sum((root / "images" / f"{m.stem.split('-', 1)[1]}.zip").stat().st_size for m in opened)
    assert server.traffic["cdn_bytes"] - metadata < parts / 3  # downloading the parts whole would be all of it
    assert server.traffic["resolve"] == 2 + len(opened)  # the commit, metadata.parquet, then one per part opened


def part_blobs(cache: Path, metadata: Path) -> set[Path]:
    """Files in the Hub cache other than metadata.parquet's (the only file the same size as it)."""
    return {p for p in cache.rglob("blobs/*") if p.stat().st_size != metadata.stat().st_size}


def test_whole_parts_are_drawn_and_deleted_once_read_unless_kept(hub_corpus, tmp_path):
    root, meta = hub_corpus
    blobs = lambda: part_blobs(tmp_path / "cache", root / "metadata.parquet")  # noqa: E731
    with HubServer(root) as server:
        dropped, kept_frame = run(hf(server, tmp_path, draw="parts"), tmp_path / "dropped", n=40)
        assert blobs() == set() and server.traffic["cdn"] == 1 + len(list((tmp_path / "dropped" / "_parts").glob("*")))
        per_part = meta.set_index("image_name").loc[sorted(dropped.names)].groupby("part_id").size()
        assert (per_part.sort_values().iloc[1:] == 30).all()  # whole parts, but the one the draw was cut in
        kept, _ = run(hf(server, tmp_path, draw="parts", keep_parts=True), tmp_path / "kept", n=40)
        assert len(blobs()) == len(per_part)
        again, again_frame = run(hf(server, tmp_path, draw="parts"), tmp_path / "again", n=40)
    assert len(blobs()) == len(per_part)  # parts in the cache before a run are not the run's to delete
    pd.testing.assert_frame_equal(kept_frame, again_frame)
    assert again.drawn == dropped.drawn and again_frame["image_name"].tolist() == kept_frame["image_name"].tolist()


def test_keep_parts_needs_parts_downloaded_whole():
    with pytest.raises(ValueError, match="keep_parts"):
        Source(kind="hf", path="a/b", keep_parts=True)


@pytest.mark.parametrize("stall", ["silent", "mid_body"])
def test_a_stalled_server_is_retried_then_stops_the_stage_with_the_request_named(hub_corpus, tmp_path, monkeypatch,
                                                                                stall):
    """huggingface_hub's client has no timeout of its own: without hub.READ_TIMEOUT_S this test would hang."""
    monkeypatch.setattr(hub, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(hub, "RETRIES", 1)
    root, _ = hub_corpus
    with HubServer(root, stall=stall) as server:
        with pytest.raises(hub.FetchError, match=r"part-\d+\.zip: bytes \d+-\d+: ReadTimeout"):
            run(hf(server, tmp_path), tmp_path / "hf", n=10)
    assert server.traffic["stalled"] >= 2  # a ranged GET and its one retry (parts in flight stall alike)


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(hub, "READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr(hub, "RETRIES", 2)
    monkeypatch.setattr(hub, "WAIT_S", 0.01)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_misbehaving_cdn_is_retried_then_stops_the_stage_with_one_line_and_exit_2(hub_corpus, tmp_path, fault,
                                                                                   quick_retries, capsys):
    """No answer but the bytes asked for is kept: each request is tried 1 + RETRIES times, then the stage ends in
    one line on stderr and exit 2, with no part marker written (nothing is stored as a reject, a rerun resumes)."""
    root, _ = hub_corpus
    with HubServer(root, fault=fault) as server, pytest.raises(SystemExit) as stop:
        entry.run(lambda: run(hf(server, tmp_path), tmp_path / "hf", n=10), "sample")
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.strip() and "img/s" not in line]  # tqdm's bar aside
    assert stop.value.code == 2 and "Traceback" not in err and len(said) == 1, err
    assert re.fullmatch(r"stage sample: error: images/part-\d+\.zip: bytes \d+-\d+: .+ \(after 2 retries\)", said[0])
    assert set(server.tried.values()) == {3} and not list((tmp_path / "hf" / "_parts").glob("*.json"))


@pytest.mark.parametrize("fault", ["503", "reset", "short", "offset"])
def test_a_fault_that_clears_on_retry_leaves_the_sample_as_a_clean_run_makes_it(hub_corpus, tmp_path, fault,
                                                                              quick_retries):
    root, _ = hub_corpus
    with HubServer(root) as server:
        clean, clean_kept = run(hf(server, tmp_path / "a"), tmp_path / "clean", n=20)
    with HubServer(root, fault=f"flaky:{fault}") as server:
        flaky, flaky_kept = run(hf(server, tmp_path / "b"), tmp_path / "flaky", n=20)
    assert server.traffic["faults"] > 3  # every range's first try failed
    pd.testing.assert_frame_equal(clean_kept, flaky_kept)
    assert (flaky.drawn, flaky.tally.counts) == (clean.drawn, clean.tally.counts)
