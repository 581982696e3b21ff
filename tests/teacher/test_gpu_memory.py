"""Engines left holding GPU memory refuse a new engine's start; other processes and machines without nvidia-smi
do not. nvidia-smi is a script on PATH here that lists the processes the test starts."""
from __future__ import annotations

import subprocess
import time

import pytest

from stylemap.teacher import gpu_memory
from stylemap.teacher.engine import VllmSpec


@pytest.fixture
def smi(tmp_path, monkeypatch):
    """A fake nvidia-smi answering the compute-apps query with the lines written to `listing`."""
    listing = tmp_path / "listing.csv"
    listing.write_text("")
    script = tmp_path / "bin/nvidia-smi"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\ncase "$*" in *--query-compute-apps=pid,used_memory*) cat {listing};; *) exit 9;; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    return listing


@pytest.fixture
def engine_process():
    """A process whose command line reads like an orphaned vLLM engine core (waited for: until bash has exec'd,
    /proc shows the forking pytest's command line)."""
    proc = subprocess.Popen(["bash", "-c", "exec -a VLLM::EngineCore sleep 60"])
    for _ in range(500):
        if gpu_memory._command(proc.pid).startswith("VLLM::EngineCore"):  # what engine_holders will read
            break
        time.sleep(0.01)
    else:
        pytest.fail(f"pid {proc.pid} never exec'd VLLM::EngineCore")
    yield proc
    proc.kill()
    proc.wait()


def test_a_left_over_engine_holding_gpu_memory_refuses_the_next_engine_in_one_line(smi, engine_process):
    other = subprocess.Popen(["sleep", "60"])  # someone else's job: not ours to judge
    try:
        smi.write_text(f"{engine_process.pid}, 40960\n{other.pid}, 1024\n")
        holders = gpu_memory.engine_holders()
        assert [(pid, mib) for pid, mib, _ in holders] == [(engine_process.pid, 40960)]
        with pytest.raises(gpu_memory.EngineLeftOver, match=rf"pid {engine_process.pid} \(40960 MiB: VLLM::EngineCore"
                           rf".*kill {engine_process.pid}\)") as err:
            spec = VllmSpec({"model": "m"}, {}, chat=False, vision=False, batch_size=1, replicas=0, timeout_s=1,
                            retries=0)
            with spec.local():  # refused before any worker starts
                pass
        assert "\n" not in str(err.value)
    finally:
        other.kill()
        other.wait()


def test_no_holder_no_nvidia_smi_or_an_exited_process_lets_engines_start(smi, engine_process, monkeypatch):
    gpu_memory.check_released()  # nvidia-smi lists nothing
    engine_process.kill()
    engine_process.wait()
    smi.write_text(f"{engine_process.pid}, 40960\n")  # listed, but gone: nvidia-smi lags behind the exit
    gpu_memory.check_released()
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_memory.engine_holders() == []


def test_a_failing_nvidia_smi_is_one_line(smi):
    smi.parent.joinpath("bin/nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    with pytest.raises(gpu_memory.UserError, match="nvidia-smi cannot list the processes holding GPU memory"):
        gpu_memory.check_released()
