"""The vLLM teacher on the local engine: a worker process that holds the engine.

vLLM pins its own torch, so it lives in .venv-vllm and runs as a child process (stylemap/teacher/worker.py)
that this module feeds JSON-line batches; the pipeline's venv never imports vLLM. The engine starts once
per stage run (`with VllmWorker.for_labels(p, model) as worker:`), and every shard reuses it. More engines
(one per GPU, or across nodes) are the Ray engine's job: stylemap/teacher/ray_llm.py, with the same engine
arguments (`label_engine`, `describe_engine`).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path

from stylemap.params import Params

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# JSON without free whitespace: a small model otherwise pads with newlines until max_tokens.
STRUCTURED = {"backend": "xgrammar", "disable_any_whitespace": True}


class WorkerError(RuntimeError):
    """The vLLM worker could not start or stopped; the message names the cause and its log tail."""


def label_engine(p: Params, model: str | Path) -> dict:
    """vllm.LLM arguments of label's engine; `model` is label.model resolved (`Project.model`: a local folder as a
    Path, which must hold a converted model, or a Hub id)."""
    if isinstance(model, Path) and not (model / "config.json").exists():
        raise WorkerError(f"label.model {model} has no config.json: run `dvc repro convert_llm` first")
    return {"structured_outputs_config": STRUCTURED, **p.label.engine_kwargs, "model": str(model),
            "max_model_len": p.label.max_model_len, "seed": p.seed}


def describe_engine(p: Params) -> dict:
    """vllm.LLM arguments of describe's engine: one image and no video per prompt, so startup profiling
    reserves memory for one image only."""
    return {"limit_mm_per_prompt": {"image": 1, "video": 0}, **p.describe.engine_kwargs, "model": p.describe.model,
            "max_model_len": p.describe.max_model_len, "seed": p.seed}


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

    @classmethod
    def for_labels(cls, p: Params, model: str | Path) -> VllmWorker:
        return cls(label_engine(p, model), timeout_s=p.label.timeout_s, retries=p.label.retries)

    @classmethod
    def for_descriptions(cls, p: Params) -> VllmWorker:
        return cls(describe_engine(p), timeout_s=p.describe.timeout_s, retries=p.describe.retries)

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
        """One result {"text", "token_ids", "finish_reason", "error"} per request, in order."""
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
        return [{"text": None, "token_ids": None, "finish_reason": None, "error": error}] * len(requests)

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
