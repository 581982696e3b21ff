"""The draw aims at n kept images: the shortest prefix of the seeded row order holding n of them, read in rounds
sized by the measured keep rate, cut at the n-th kept row, the same whatever the rounds or parts in flight, and resumable."""
from __future__ import annotations

import pandas as pd
import pytest

from stylemap import shards
from stylemap.corpus.readers import diffusiondb
from stylemap.corpus.sampling import rank_rows, round_rows, sample_source
from stylemap.params import Source
from tests.support.fixtures import make_params, write_diffusiondb


def run(root, out, n, **sample):
    s = make_params({"sample": {"n": n, **sample}}).sample
    result = sample_source("x", Source(kind="local", path=str(root)), s, 0, out, "test")
    result.tally.report(result.drawn, "x")  # in = kept + rejected, or it raises
    return result, shards.read_dir(out)


@pytest.fixture(scope="module")
def mostly_broken(tmp_path_factory):
    """Prompts the table passes but 60 % of images undecodable: the table's keep rate is far too high, so the
    first round falls short and later ones, sized by the measured rate, finish the draw."""
    root = tmp_path_factory.mktemp("broken")
    write_diffusiondb(root, parts=8, per_part=25, seed=5, mix={"kept": 0.4, "undecodable": 0.6})
    return root


def test_the_draw_is_the_shortest_prefix_of_the_seeded_order_holding_n_kept(mostly_broken, tmp_path):
    _, everything = run(mostly_broken, tmp_path / "all", n=10**6)
    keepable = set(everything["image_name"])
    order = pd.read_parquet(mostly_broken / "metadata.parquet").sample(frac=1, random_state=0)["image_name"].tolist()
    assert order == rank_rows(pd.read_parquet(mostly_broken / "metadata.parquet"), 0)["image_name"].tolist()
    for n in (1, 30, 70):
        result, kept = run(mostly_broken, tmp_path / f"n{n}", n=n)
        drawn = [i for i, name in enumerate(order) if name in keepable][n - 1] + 1
        assert (result.drawn, result.tally.kept) == (drawn, n) and result.names == set(order[:drawn])
        assert set(kept["image_name"]) == set(order[:drawn]) & keepable
        assert result.tally.counts == {"undecodable": drawn - n}
    rounds = {p.name.split("-")[0] for p in (tmp_path / "n70" / "_parts").glob("*.json")}
    assert len(rounds) >= 2  # the table promised 100 % kept; the measured 40 % sized the next rounds


def test_neither_parts_in_flight_nor_a_crash_change_the_draw(mostly_broken, tmp_path, monkeypatch):
    first, kept = run(mostly_broken, tmp_path / "a", n=50, parts_in_flight=1)
    again, kept3 = run(mostly_broken, tmp_path / "b", n=50, parts_in_flight=3)
    assert (again.drawn, again.tally.counts, again.names) == (first.drawn, first.tally.counts, first.names)
    pd.testing.assert_frame_equal(kept, kept3)
    markers = sorted((tmp_path / "b" / "_parts").glob("*.json"))
    markers[-1].unlink()  # the last round's part in flight when the run died, after its cut shards were written
    opened = []
    real = diffusiondb.Corpus.open_part
    monkeypatch.setattr(diffusiondb.Corpus, "open_part",
                        lambda self, part_id, cap: opened.append(part_id) or real(self, part_id, cap))
    resumed, kept_resumed = run(mostly_broken, tmp_path / "b", n=50, parts_in_flight=3)
    assert opened == [int(markers[-1].stem.rsplit("-", 1)[1])]
    assert (resumed.drawn, resumed.tally.counts) == (first.drawn, first.tally.counts)
    pd.testing.assert_frame_equal(kept, kept_resumed)


@pytest.mark.parametrize(("need", "rate", "rows"), [(1, 1.0, 1), (100, 0.5, 229), (500_000, 0.5, 1_002_000)])
def test_a_round_reads_the_rows_n_needs_plus_two_standard_deviations(need, rate, rows):
    assert round_rows(need, rate) == rows
