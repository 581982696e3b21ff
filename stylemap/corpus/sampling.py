"""Draw n kept images per source: rows in a seeded order, read part by part in rounds, every reject counted.

The draw order is a seeded permutation of the table's rows (`draw: rows`), or of its parts with each part's rows
in that permutation's order (`draw: parts`: a cluster sample). The sample is the shortest prefix of that order
holding n kept rows, so `in = kept + rejected` counts exactly the rows drawn, and the result does not depend on
how the work was split. A round reads the next rows the keep rate says n needs (measured on the rows read so
far; before any, the table's filters on the first PILOT rows) plus two standard deviations; the round that
passes n is cut at its n-th kept row, so images read beyond it are dropped. Its parts are read `sample.parts_in_flight`
at a time (reading one overlaps decoding another), each streamed into shards whose finished part leaves
`_parts/rNN-part-NNNNNN.json`, its tally: a rerun after a crash redoes only the parts in flight.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from stylemap import schemas, shards
from stylemap.corpus.readers import open_corpus
from stylemap.corpus.readers.base import CorpusError, Reader
from stylemap.corpus.records import PartTally, sample_part, table_keeps
from stylemap.files import write_text_atomic
from stylemap.params import RUN_KNOBS, Sample, Source

PILOT = 10_000  # rows whose table fields give the first round's keep rate (±0.5 % at a 50 % rate)


def rank_rows(meta: pd.DataFrame, seed: int, draw: str = "rows") -> pd.DataFrame:
    """Every row of `meta` in draw order, indexed 0.. with that position as `rank`; `part` is the int part id (-1
    when part_id is not one), `unaddressable` the reason a row can address no image ("" when it can), and
    `duplicate` marks an image name ranked before. With `draw: parts` rows no part holds are never drawn."""
    ranked = meta.sample(frac=1, random_state=seed)
    part = pd.to_numeric(ranked["part_id"], errors="coerce")
    good_part = part.notna() & (part % 1 == 0) & (part >= 0) & (part < 2**63)  # larger ones would wrap in int64
    good_name = ranked["image_name"].map(lambda v: isinstance(v, str) and v.strip() != "").astype(bool)  # bool when empty too
    ranked = ranked.assign(part=part.where(good_part, -1).astype("int64"),
                           unaddressable=np.select([~good_part, ~good_name], ["bad_part_id", "bad_image_name"], ""))
    if draw == "parts":
        ids = np.sort(ranked.loc[good_part, "part"].unique())
        position = pd.Series(np.arange(len(ids)), index=np.random.RandomState(seed).permutation(ids))
        ranked = ranked[good_part].assign(order=lambda f: f["part"].map(position)).sort_values("order", kind="stable")
    ranked = ranked.reset_index(drop=True)
    return ranked.assign(rank=ranked.index, duplicate=ranked["image_name"].duplicated())


def round_rows(need: int, rate: float) -> int:
    """Rows that hold `need` kept ones at keep rate `rate` with ~98 % probability: the negative binomial's mean
    need/rate plus two standard deviations, sqrt(need·(1-rate))/rate each."""
    return math.ceil((need + 2 * math.sqrt(need * (1 - rate))) / rate)


class Sampled(NamedTuple):
    """What sampling one source gives the stage: counts for its metrics, and the names it drew (for sources
    that exclude this one's draw)."""

    drawn: int  # rows drawn: in = kept + rejected
    tally: PartTally
    ignored_files: int  # files of the corpus outside its layout
    excluded: int  # rows left out before the draw because another source drew them
    names: frozenset[str]


def sample_source(name: str, src: Source, s: Sample, seed: int, out: Path, code: str,
                  excluded: frozenset[str] = frozenset()) -> Sampled:
    """Draw, filter and write one source's shards into `out`, round by round (`code`: the stage's code fingerprint).

    Rows named in `excluded` (another source's draw, for a disjoint sample) are taken out before drawing."""
    corpus = open_corpus(src)
    s = s.model_copy(update={k: v for k, v in (("n", src.n), ("min_words", src.min_words)) if v is not None})
    meta = corpus.metadata()
    others = meta["image_name"].isin(excluded)
    ranked = rank_rows(meta[~others], seed, src.draw)
    shards.prepare_dir(out, {"source": src.model_dump(exclude={"keep_parts"}), "sample": s.model_dump(exclude=RUN_KNOBS),
                             "seed": seed, "corpus": corpus.identity(), "code": code, "excluded": sorted(excluded)})
    ends = np.append(np.flatnonzero(np.diff(ranked["part"].to_numpy())) + 1, len(ranked))  # where each part's rows end
    rounds: list[dict[int, PartTally]] = []
    done, kept = 0, 0
    rate = (table_keeps(ranked.head(PILOT), s, src.syntax) + 1) / (min(PILOT, len(ranked)) + 2)
    with tqdm(total=0, desc=f"sample {name}", unit="img") as bar, ThreadPoolExecutor(s.parts_in_flight) as pool:
        while kept < s.n and done < len(ranked):
            end = min(len(ranked), done + round_rows(s.n - kept, rate))
            if src.draw == "parts":  # whole parts: a round ends where a part does
                end = int(ends[np.searchsorted(ends, end)])
            bar.total = end
            rounds.append(_run_round(len(rounds), name, corpus, ranked.iloc[done:end], s, src, out, pool, bar))
            before, kept = kept, kept + sum(t.kept for t in rounds[-1].values())
            done = end
            rate = (kept + 1) / (done + 2)
    if kept >= s.n:  # rows after the n-th kept one were read, not drawn
        done = _cut(out, len(rounds) - 1, rounds[-1], s.n - before)
    total = PartTally()
    for tallies in rounds:
        for tally in tallies.values():
            total.merge(tally)
    part_ids = pd.to_numeric(meta["part_id"], errors="coerce").dropna().unique()
    return Sampled(done, total, corpus.unexpected_files(part_ids), int(others.sum()),
                   frozenset(ranked["image_name"].iloc[:done].astype(str)))


def _run_round(r: int, name: str, corpus: Reader, rows: pd.DataFrame, s: Sample, src: Source, out: Path,
               pool: ThreadPoolExecutor, bar: tqdm) -> dict[int, PartTally]:
    """Round r: every part holding some of `rows`, `s.parts_in_flight` at a time; tallies by part id (-1: rows that
    address no part, rejected from the table)."""
    tallies = {-1: PartTally()}
    addressable = rows["unaddressable"] == ""
    for row in rows[~addressable].itertuples():
        column = "part_id" if row.unaddressable == "bad_part_id" else "image_name"
        tallies[-1].reject(row.image_name, row.unaddressable, f"{column}={getattr(row, column)!r}", rank=row.rank)
    bar.update(int((~addressable).sum()))
    futures = {}
    for part_id, part_rows in rows[addressable].groupby("part", sort=False):  # parts in draw order
        marker = out / "_parts" / f"r{r:02d}-part-{part_id:06d}.json"
        if marker.exists():
            tallies[part_id] = PartTally.from_dict(json.loads(marker.read_text()))
            bar.update(len(part_rows))
        else:
            futures[pool.submit(_sample_one_part, r, name, corpus, part_rows, s, src, out)] = part_id
    try:
        for future in as_completed(futures):
            tallies[futures[future]] = future.result()
            bar.update(tallies[futures[future]].kept + tallies[futures[future]].rejected)
    except BaseException:
        for future in futures:
            future.cancel()  # a failed part stops the stage; parts not started are not read
        raise
    return tallies


def _sample_one_part(r: int, name: str, corpus: Reader, rows: pd.DataFrame, s: Sample, src: Source,
                     out: Path) -> PartTally:
    """Read one part's rows of round r (in image-name order), write its shards, then its marker; returns its tally."""
    rows = rows.sort_values("image_name", kind="stable")
    part_id = int(rows["part"].iloc[0])
    try:
        part = corpus.open_part(part_id, s.max_member_bytes)
    except CorpusError as err:
        kept, tally = [], PartTally()
        for row in rows.itertuples():
            tally.reject(row.image_name, "part_unreadable", str(err), rank=row.rank)
    else:
        with part:
            kept, tally = sample_part(name, part, rows, s, src)
    for k in range(0, len(kept), s.shard_size):
        schemas.write("sample", pd.DataFrame(kept[k : k + s.shard_size]),
                      out / f"shard-r{r:02d}-p{part_id:06d}-{k // s.shard_size:04d}.parquet")
    write_text_atomic(out / "_parts" / f"r{r:02d}-part-{part_id:06d}.json", json.dumps(tally.to_dict()))
    return tally


def _cut(out: Path, r: int, last: dict[int, PartTally], need: int) -> int:
    """Cut round r (the last) at its `need`-th kept row by rank: its tallies lose the rows ranked after it, its
    shards their images (idempotent, for a rerun); returns the rows drawn, that row's rank + 1."""
    cutoff = sorted(rank for tally in last.values() for rank, _ in tally.kept_rows)[need - 1]
    for part_id, tally in last.items():
        dropped = pa.array(sorted(name for rank, name in tally.kept_rows if rank > cutoff), pa.string())
        last[part_id] = tally.upto(cutoff)
        for shard in out.glob(f"shard-r{r:02d}-p{part_id:06d}-*.parquet") if len(dropped) else []:
            table = pq.read_table(shard)
            table = table.filter(pc.invert(pc.is_in(table["image_name"], dropped)))
            schemas.write("sample", table, shard) if table.num_rows else shard.unlink()
    return cutoff + 1
