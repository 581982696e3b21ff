"""describe_vlm through a real vLLM engine serving a tiny random BLIP-2 built offline (stylemap/teacher/tiny_vlm.py).

Plumbing only: one valid record per image, failures counted with their reason. The model's text is noise.
"""
import io
import json
import subprocess

import pandas as pd
import pytest
from PIL import Image

from stylemap.params import REPO as ROOT
from stylemap.teacher.client import VLLM_PYTHON, VllmWorker
from stylemap.teacher.tasks import describe_vlm
from stylemap.testing import make_params

pytestmark = [pytest.mark.slow,  # starts a vLLM engine
              pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=f"{VLLM_PYTHON} missing: run bash .ci/setup-vllm")]


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    dest = tmp_path_factory.mktemp("tiny-vlm") / "blip2"
    subprocess.run([str(VLLM_PYTHON), "stylemap/teacher/tiny_vlm.py", str(dest)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    return make_params({"describe": {"backend": "vlm", "model": str(dest), "max_tokens": 8, "batch_size": 2}})


def _image(size, color, fmt="WEBP") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def test_describe_vlm_one_record_per_image(params):
    df = pd.DataFrame({
        "image_id": [f"t/{i}" for i in range(4)],
        "prompt": ["a red square", "a tall blue banner, oil painting", None, "broken file"],
        "image_bytes": [_image((64, 64), (200, 0, 0)), _image((300, 900), (0, 0, 200), "PNG"),
                        _image((512, 256), (0, 150, 0)), b"not an image"],
    })
    with VllmWorker.for_descriptions(params) as worker:
        out = describe_vlm(df, worker, params)
        again = describe_vlm(df, worker, params)
    assert out["image_id"].tolist() == df["image_id"].tolist()
    assert out["status"].iloc[3] == "failed" and out["error"].iloc[3].startswith("image decode")
    served = out.iloc[:3]
    # max_tokens 8: the random model's noise is cut at the limit, so its rows are `truncated`, not ok
    assert served["error"].isna().all() and served["status"].isin(["ok", "empty", "cannot_analyse", "truncated"]).all()
    assert (served["status"].isin(["ok", "truncated"]) == served["description"].notna()).all()
    assert set(out["backend"]) == {"vlm"} and set(out["model"]) == {params.describe.model}
    assert set(out["vllm_version"]) == {"0.32.0"} and out["prompt_hash"].str.len().eq(64).all()
    assert json.loads(out["sampling"].iloc[0])["max_tokens"] == 8
    pd.testing.assert_frame_equal(out, again)  # greedy and seeded: reruns are identical
