"""Read throughput of one set of images packed in each corpus format, with each format's ratio to DiffusionDB.

The first --n Horde images (their own WebP bytes, prompts and part split) are packed by every builder in FORMATS,
then read whole two ways: through `sample_source` with the prompt filters relaxed (min_words 0: decode, pHash and
shard writing included, as the sample stage runs), and through the reader alone (metadata, then open_part and read
of every row, nothing decoded: the format's own cost). Each format runs --repeats times, interleaved, and its best
run counts (the machine is shared). A format joins by adding its builder, (rows, empty folder) -> Source, to FORMATS.
Usage: .venv/bin/python bench/bench_formats.py [--n 200] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402

from stylemap.corpus import demo  # noqa: E402
from stylemap.corpus.readers import open_corpus  # noqa: E402
from stylemap.corpus.repackage import to_webdataset  # noqa: E402
from stylemap.corpus.sampling import sample_source  # noqa: E402
from stylemap.params import Source  # noqa: E402
from tests.support.fixtures import HORDE, horde_rows, make_params, write_journeydb  # noqa: E402

CAP = 1 << 26


def build_diffusiondb(rows: list[dict], root: Path) -> Source:
    demo.write_corpus([{"image_name": r["image_name"], "png": r["data"], "prompt": r["prompt"], "cfg": 7.0, "seed": i,
                        "part_id": r["part_id"]} for i, r in enumerate(rows)], root, side=512)
    return Source(kind="local", path=str(root), min_words=0)


def build_journeydb(rows: list[dict], root: Path) -> Source:
    parts: dict[int, dict] = {}
    for r in rows:
        parts.setdefault(r["part_id"], {})[f"{r['part_id']:03d}/{r['image_name']}"] = r["data"]
    lines = [{"img_path": f"./{r['part_id']:03d}/{r['image_name']}", "prompt": r["prompt"],
              "Task1": {"Style": [r["style"]]}, "Task2": {"Caption": ""}} for r in rows]
    write_journeydb(root, lines, parts)
    return Source(kind="local", path=str(root), format="journeydb", min_words=0)


def build_img2dataset(rows: list[dict], root: Path) -> Source:
    """The DiffusionDB build, rewritten as img2dataset webdataset output by the repackage stage's writer."""
    packed = build_diffusiondb(rows, root.with_name(root.name + "-source"))
    root.mkdir(parents=True)
    to_webdataset(open_corpus(packed), root, shard_size=100, max_bytes=CAP)
    return Source(kind="local", path=str(root), format="img2dataset", layout="webdataset", min_words=0)


def build_folder(rows: list[dict], root: Path) -> Source:
    root.mkdir(parents=True)
    for r in rows:
        (root / r["image_name"]).write_bytes(r["data"])
    pd.DataFrame({"file_name": [r["image_name"] for r in rows], "prompt": [r["prompt"] for r in rows]}) \
        .to_csv(root / "prompts.csv", index=False)
    return Source(kind="local", path=str(root), format="folder", min_words=0)


FORMATS = {"diffusiondb": build_diffusiondb, "journeydb": build_journeydb, "img2dataset": build_img2dataset,
           "folder": build_folder}


def through_sample(src: Source, n: int, out: Path) -> tuple[float, int]:
    """Seconds to sample all n rows into a fresh folder, and how many were kept."""
    p = make_params({"sample.n": n})
    start = time.perf_counter()
    result = sample_source("bench", src, p.sample, p.seed, out, "bench")
    assert result.drawn == n == result.tally.kept + result.tally.rejected
    return time.perf_counter() - start, result.tally.kept


def through_reader(src: Source) -> float:
    """Seconds to list the corpus and read every row's bytes, part by part in the order sample reads them."""
    start = time.perf_counter()
    corpus = open_corpus(src)
    for part_id, rows in corpus.metadata().groupby("part_id"):
        with corpus.open_part(int(part_id), CAP) as part:
            for name in sorted(rows["image_name"]):
                part.read(name, CAP)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="Horde images packed in each format")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not HORDE.exists():
        sys.exit(f"shared Horde corpus absent at {HORDE}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    rows = horde_rows(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        sources = {fmt: build(rows, Path(tmp) / fmt) for fmt, build in FORMATS.items()}
        best: dict[str, dict] = {fmt: {"sample": float("inf"), "reader": float("inf")} for fmt in FORMATS}
        for k in range(args.repeats):
            for fmt, src in sources.items():
                seconds, kept = through_sample(src, len(rows), Path(tmp) / f"out-{fmt}-{k}")
                best[fmt].update(sample=min(best[fmt]["sample"], seconds), reader=min(best[fmt]["reader"], through_reader(src)),
                                 kept=kept)
    base = best["diffusiondb"]
    print(f"{len(rows)} Horde images, {sum(len(r['data']) for r in rows) / len(rows) / 1024:.0f} KB each on average, "
          f"in {len({r['part_id'] for r in rows})} parts; ratio = this format's images/s / diffusiondb's")
    print(f"{'format':12s} {'sample_source images/s':>24s} {'ratio':>6s} {'reader alone images/s':>23s} {'ratio':>6s}  kept")
    for fmt, b in best.items():
        print(f"{fmt:12s} {len(rows) / b['sample']:24.1f} {base['sample'] / b['sample']:6.2f} "
              f"{len(rows) / b['reader']:23.1f} {base['reader'] / b['reader']:6.2f}  {b['kept']}/{len(rows)}")


if __name__ == "__main__":
    main()
