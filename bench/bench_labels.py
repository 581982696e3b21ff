"""CPU throughput of the vLLM teacher: label (Gemma 3 270M) and describe (tiny random Qwen2.5-VL) images/s.

Each is timed through the production path (the stage's work on an open VllmWorker) with params.yaml;
engine start-up is reported apart from steady-state throughput (one warm-up batch is excluded).
Label inputs: generation prompts of the shared Horde corpus standing in for descriptions (the CPU
profile's `prompt` backend does exactly that), else a fixed sentence. Describe uses synthetic images:
the tiny VLM's speed says what the plumbing costs, not what a real VLM would.

    .venv/bin/python bench/bench_labels.py [--n 48]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stylemap.labels.taxonomy import load_taxonomy  # noqa: E402
from stylemap.paths import Project  # noqa: E402
from stylemap.profile import load  # noqa: E402
from stylemap import runner  # noqa: E402
from stylemap.teacher.client import VLLM_PYTHON, VllmWorker  # noqa: E402
from stylemap.teacher.describe import describe_work  # noqa: E402
from stylemap.teacher.label import label_work  # noqa: E402
from tests.support.engines import through  # noqa: E402
from tests.support.fixtures import HORDE, make_params  # noqa: E402

HORDE_METADATA = HORDE / "metadata.parquet"
TINY_VLM = "tests/support/tiny_vlm.py"  # run in .venv-vllm (not imported): builds a random Qwen2.5-VL offline


def descriptions(n: int) -> pd.DataFrame:
    texts = (pd.read_parquet(HORDE_METADATA, columns=["prompt"])["prompt"].head(n).tolist() if HORDE_METADATA.exists()
             else ["A watercolor painting of a lighthouse at dusk, soft washes of blue."] * n)
    return pd.DataFrame({"image_id": [f"b/{i}" for i in range(len(texts))], "description": texts, "status": "ok"})


def images(n: int) -> pd.DataFrame:
    def encode(i):
        buf = io.BytesIO()
        Image.new("RGB", (512 + 8 * i, 384), (i * 5 % 255, 80, 160)).save(buf, format="WEBP")
        return buf.getvalue()

    return pd.DataFrame({"image_id": [f"b/{i}" for i in range(n)], "prompt": ["a test image"] * n,
                         "image_bytes": [encode(i) for i in range(n)]})


def timed(worker_factory, run, df: pd.DataFrame, warmup: int) -> tuple[float, float]:
    start = time.perf_counter()
    with worker_factory() as worker:
        ready = time.perf_counter() - start
        run(df.head(warmup), worker)
        t = time.perf_counter()
        run(df, worker)
        return ready, len(df) / (time.perf_counter() - t)


def _worker(work):
    spec = work.inference
    return VllmWorker(spec.vllm_args, timeout_s=spec.timeout_s, retries=spec.retries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    args = ap.parse_args()
    p, project = load(ROOT), Project(ROOT)
    taxonomy, fewshot = load_taxonomy(project.find(p.label.taxonomy)), project.find(p.label.fewshot)
    model = Project(ROOT).model(p.label.model)  # as the label stage resolves it
    label = label_work(p.label, p.seed, model, taxonomy, fewshot)
    start, rate = timed(lambda: _worker(label), lambda df, w: runner.apply(through(label, w), df),
                        descriptions(args.n), p.label.batch_size)
    print(f"label    Gemma 3 270M   engine start {start:6.1f} s   {rate:6.2f} images/s  (batch {p.label.batch_size})")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(VLLM_PYTHON), TINY_VLM, f"{tmp}/vlm"], cwd=ROOT, check=True, capture_output=True)
        q = make_params({"describe.model": f"{tmp}/vlm", "describe.describer": "vlm"})
        describe = describe_work(q.describe, q.seed)
        start, rate = timed(lambda: _worker(describe), lambda df, w: runner.apply(through(describe, w), df),
                            images(args.n), q.describe.batch_size)
    print(f"describe tiny Qwen2.5-VL engine start {start:6.1f} s   {rate:6.2f} images/s  "
          f"(batch {q.describe.batch_size}, {q.describe.max_tokens} max tokens)")


if __name__ == "__main__":
    main()
