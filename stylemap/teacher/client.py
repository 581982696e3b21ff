"""The local transport of a teacher: a worker process that holds one vLLM engine.

vLLM pins its own torch, so it lives in .venv-vllm and runs as a child process (stylemap/teacher/worker.py)
that this module feeds JSON-line batches; the pipeline's venv never imports vLLM. The engine starts once
per stage run (`engine.VllmSpec.local()`), and every shard reuses it. More engines (one per GPU, or across
nodes) are the Ray transport's job: stylemap/teacher/ray_llm.py, from the same spec.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from stylemap.paths import REPO as ROOT
from stylemap.teacher.protocol import RESULT_FIELDS, Result

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


class WorkerError(RuntimeError):
    """The vLLM worker could not start or stopped; the message names the cause and its log tail."""


class VllmWorker:
    """A `stylemap.teacher.worker` child process holding one vLLM engine.

    `generate` sends one batch (a whole shard: vLLM schedules the list itself) and waits at most `timeout_s`
    for each next request to finish (the worker reports each one), so a hung engine is caught within a flat
    `timeout_s`, whatever the batch size. A timeout or a dead worker kills the process group and retries the
    batch on a fresh worker up to `retries` times; after that every request of the batch comes back failed.
    Per-request errors reported by vLLM (e.g. a prompt over max_model_len) are deterministic: not retried.

    """

    def __init__(self, engine: dict, *, timeout_s: float, retries: int, start_timeout_s: float = 1800.0,
                 python: str | Path = VLLM_PYTHON, argv: list[str] | None = None):
        self.engine = engine
        self.timeout_s = timeout_s
        self.retries = retries
        self.start_timeout_s = start_timeout_s
        self.argv = argv or [str(python), "-m", "stylemap.teacher.worker", "--engine", json.dumps(engine)]
        self.info: dict = {}
        self.failures: list[str] = []  # one line per timeout/crash, for the stage log
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._log: deque[str] = deque(maxlen=40)
        self._timed_out: float | None = None

    def __enter__(self) -> VllmWorker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def vllm_version(self) -> str:
        return self.info.get("vllm_version", "")

    def start(self) -> None:
        """Spawn the worker and wait for its ready line (engine loaded) or a clear reason it failed."""
        if not Path(self.argv[0]).exists():
            raise WorkerError(f"{self.argv[0]} not found: the vLLM venv is missing; run `bash .ci/setup-vllm`")
        self._lines, self._log = queue.Queue(), deque(maxlen=40)
        self._proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True)  # own process group: a kill takes the engine too
        threading.Thread(target=_pump, args=(self._proc.stdout, self._lines.put, True), daemon=True).start()
        self._stderr = threading.Thread(target=_pump, args=(self._proc.stderr, self._log.append, False), daemon=True)
        self._stderr.start()
        line = self._read(self.start_timeout_s)
        if line is None:
            self.kill()
            raise WorkerError(f"vLLM worker ({self.engine.get('model')}) did not start: {self._why()}")
        self.info = json.loads(line)
        if not self.info.get("ready"):
            raise WorkerError(f"vLLM worker sent {line!r} instead of its ready line")

    def generate(self, requests: list[dict], sampling: dict) -> list[dict]:
        """One `protocol.Result` (as a dict) per request, in order."""
        if not requests:
            return []
        payload = json.dumps({"requests": requests, "sampling": sampling}) + "\n"
        error = ""
        for _ in range(self.retries + 1):
            if self._proc is None or self._proc.poll() is not None:
                self.start()
            try:
                self._proc.stdin.write(payload)
                self._proc.stdin.flush()
            except BrokenPipeError:
                line = None
            else:
                line = self._reply()
            if line is not None:
                reply = json.loads(line)
                if reply.get("error"):
                    error = reply["error"]  # the worker could not read the batch: retrying cannot help
                    break
                if len(reply.get("results", [])) == len(requests):
                    return reply["results"]
                error = f"worker answered {len(reply.get('results', []))} results for {len(requests)} requests"
                break
            error = self._why()
            self.failures.append(error)
            self.kill()
        return [Result.failed(error).to_dict()] * len(requests)

    def close(self) -> None:
        """EOF on stdin lets the worker shut its engine down; kill it if it does not exit in time."""
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the worker's process group: the worker and the engine processes it started."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group is gone already
        self._proc.wait()

    def _reply(self) -> str | None:
        """The batch's reply line, skipping heartbeats; None once no line came for timeout_s (or the worker died)."""
        while (line := self._read(self.timeout_s)) is not None and line.startswith('{"progress"'):
            pass
        return line

    def _read(self, timeout: float) -> str | None:
        """Next stdout line, or None if the worker exits or stays silent for `timeout` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._timed_out = timeout
            return None
        self._timed_out = None
        return line

    def _why(self) -> str:
        if self._timed_out is not None:
            return f"timeout: no reply within {self._timed_out:g} s"
        code = self._proc.wait() if self._proc else None
        self._stderr.join(timeout=5)  # let the last log lines (the traceback) arrive
        tail = "\n".join(list(self._log)[-15:])
        return f"worker exited with code {code}; log tail:\n{tail}"


def _pump(stream, sink, mark_eof: bool) -> None:
    """Move a child's output lines to `sink` (a reader thread, so neither pipe can fill up and block it)."""
    for line in stream:
        sink(line.rstrip("\n"))
    if mark_eof:
        sink(None)


def served(worker, sampling: dict) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Prepared rows -> the same rows with their results, from an open local worker (`client.VllmWorker`)."""
    def infer(rows: pd.DataFrame) -> pd.DataFrame:
        requests = [json.loads(r) if not reason else None for r, reason in zip(rows["request"], rows["reason"])]
        sent = [i for i, r in enumerate(requests) if r is not None]
        results = [Result.failed(reason) for reason in rows["reason"]]
        for i, result in zip(sent, worker.generate([requests[i] for i in sent], sampling)):
            results[i] = Result(**result)
        return with_results(rows.drop(columns="request"), results, worker.vllm_version)
    return infer


def with_results(rows: pd.DataFrame, results: list[Result], vllm_version: str) -> pd.DataFrame:
    """Rows with each one's result columns and the engine's version."""
    columns = pd.DataFrame({f: pd.Series([getattr(r, f) for r in results], index=rows.index, dtype=object)
                            for f in RESULT_FIELDS})  # object columns: a missing value stays None, not NaN
    return pd.concat([rows, columns], axis=1).assign(vllm_version=vllm_version)
