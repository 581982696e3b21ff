"""Engines left holding GPU memory: checked on this node before a teacher starts its own.

A vLLM engine that outlives its stage (an EngineCore child orphaned by a killed driver, a Ray actor that did
not exit) keeps its KV cache reserved, and the next engine then dies of CUDA out-of-memory, or waits on it (Ray
Data LLM can hang on that error, ray-project/ray#59986). So each engine start first asks `nvidia-smi` which
processes hold GPU memory and refuses, in one line naming them, when one of them is a vLLM or Ray worker.
Other processes (another user's job) are not ours to judge: they are left to vLLM's own memory check.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stylemap.entry import UserError

ENGINE_MARKS = ("vllm", "enginecore", "ray::", "stylemap.teacher.worker")  # in a process's command line, lower case
QUERY = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
TIMEOUT_S = 30


class EngineLeftOver(UserError):
    """An engine process of an earlier run still holds GPU memory."""


def engine_holders() -> list[tuple[int, int, str]]:
    """(pid, MiB, command line) of each vLLM/Ray process holding GPU memory on this node; none without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, *QUERY], capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout
    except (subprocess.SubprocessError, OSError) as err:
        raise UserError(f"nvidia-smi cannot list the processes holding GPU memory: {err}") from None
    holders = []
    for line in filter(None, map(str.strip, out.splitlines())):
        pid, mib = (field.strip() for field in line.split(",")[:2])
        command = _command(int(pid))
        if any(mark in command.lower() for mark in ENGINE_MARKS):
            holders.append((int(pid), int(mib) if mib.isdigit() else 0, command))
    return holders


def check_released() -> None:
    """Raise `EngineLeftOver` when an engine process still holds GPU memory on this node."""
    holders = engine_holders()
    if holders:
        named = "; ".join(f"pid {pid} ({mib} MiB: {command[:60]})" for pid, mib, command in holders)
        raise EngineLeftOver(f"an engine of an earlier run still holds GPU memory: {named}; stop it (kill "
                             f"{' '.join(str(pid) for pid, _, _ in holders)}) before starting new engines")


def _command(pid: int) -> str:
    """The process's command line ("" once it has exited, or where /proc does not show it)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
