"""describe's VLM work through a real vLLM engine serving a tiny random Qwen2.5-VL (tests/support/tiny_vlm.py).

Production's describe path on CPU: vLLM renders Qwen2.5-VL's chat template, its image processor turns each
image into image tokens, the vision tower encodes them, and the worker batches requests and reports failures
per request. A served row shows the image went that way: vLLM fails a request whose prompt lacks the image's
placeholder ("Failed to apply prompt replacement"). The weights are random, so the text is noise (behind the long
describe prompt it does not even change with the image): the tests check which row gets text and which status.
"""
import io
import json
import subprocess

import pandas as pd
import pytest
from PIL import Image

from stylemap.paths import REPO as ROOT
from stylemap.rejects import Rejects
from stylemap import runner
from stylemap.teacher.client import VLLM_PYTHON, VllmWorker
from stylemap.teacher.describe import describe_work
from tests.support.engines import through
from tests.support.fixtures import make_params

pytestmark = [pytest.mark.slow,  # starts a vLLM engine
              pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=f"{VLLM_PYTHON} missing: run bash .ci/setup-vllm")]
MAX_TOKENS = 8  # the random model never ends an answer this early: every served row is cut at the limit


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    dest = tmp_path_factory.mktemp("tiny-vlm") / "qwen2_5_vl"
    subprocess.run([str(VLLM_PYTHON), "tests/support/tiny_vlm.py", str(dest)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    return make_params({"describe": {"describer": "vlm", "model": str(dest), "max_tokens": MAX_TOKENS, "batch_size": 4}})


@pytest.fixture(scope="module")
def worker(params):
    spec = describe_work(params.describe, params.seed).inference
    with VllmWorker(spec.vllm_args, timeout_s=spec.timeout_s, retries=spec.retries) as worker:
        yield worker


def describe_vlm(df, worker, params):
    return runner.apply(through(describe_work(params.describe, params.seed), worker), df)


def _image(size, color, fmt="WEBP") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def _images(params) -> pd.DataFrame:
    too_long = "word " * params.describe.max_model_len  # over max_model_len: vLLM rejects this request alone
    return pd.DataFrame({
        "image_id": [f"t/{i}" for i in range(5)],
        "prompt": ["a red square", "a tall blue banner, oil painting", None, "broken file", too_long],
        "image_bytes": [_image((64, 64), (200, 0, 0)), _image((300, 900), (0, 0, 200), "PNG"),
                        _image((512, 256), (0, 150, 0)), b"not an image", _image((64, 64), (9, 9, 9))],
    })


def test_one_record_per_image_and_each_failure_counted_with_its_reason(params, worker):
    df = _images(params)
    out = describe_vlm(df, worker, params)
    assert out["image_id"].tolist() == df["image_id"].tolist()
    assert out["status"].tolist() == ["truncated"] * 3 + ["failed"] * 2
    assert out["description"].iloc[:3].notna().all() and out["error"].iloc[:3].isna().all()
    assert out["description"].iloc[3:].isna().all()
    assert out["error"].iloc[3].startswith("image decode")
    assert "maximum context length" in out["error"].iloc[4]
    # what the describe stage reports: every image in, none kept (cut answers are not analyses), reasons counted
    assert Rejects.from_column(out["status"], "ok").report(len(df), "t") == {
        "t.in": 5, "t.kept": 0, "t.rejected": 5, "t.rejected.failed": 2, "t.rejected.truncated": 3}
    assert set(out["backend"]) == {"vlm"} and set(out["model"]) == {params.describe.model}
    assert set(out["vllm_version"]) == {worker.info["vllm_version"]} == {"0.32.0"}
    assert out["prompt_hash"].str.len().eq(64).all()
    assert json.loads(out["sampling"].iloc[0])["max_tokens"] == MAX_TOKENS
    pd.testing.assert_frame_equal(out, describe_vlm(df, worker, params))  # greedy and seeded: reruns are identical



def test_describe_on_ray_gives_the_local_records(params, worker, tmp_path):
    """The same images through ray.data.llm (executor ray: image preparation and Qwen's chat template in the
    processor's stages, the engine in .venv-vllm's Python, a 2-CPU local cluster): the same statuses, errors'
    kinds and provenance, row for row (the noise text itself is not compared)."""
    import ray

    from stylemap import shards
    from stylemap.files import write_atomic
    from stylemap.runner import Executor

    df = _images(params)
    write_atomic(df, tmp_path / "in/shard-00000.parquet")
    local = describe_vlm(df, worker, params)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        job = shards.Job("t", shards.shard_files(tmp_path / "in"), tmp_path / "out", {})
        stats = runner.run(describe_work(params.describe, params.seed), [job],
                           Executor("ray", shards_in_flight=3, block_rows=2), shard_size=3)["t"]
    finally:
        ray.shutdown()
    remote = shards.read_dir(tmp_path / "out")
    assert stats == {"shards": 2, "shards_resumed": 0, "rows_in": 5, "rows_out": 5}
    for column in ["image_id", "status", "backend", "model", "prompt_hash", "sampling", "vllm_version"]:
        assert remote[column].tolist() == local[column].tolist(), column
    assert remote["error"].iloc[3] == local["error"].iloc[3]  # the decode failure, from the same function
    assert "maximum context length" in remote["error"].iloc[4]
