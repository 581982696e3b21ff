"""The vLLM teacher, parent side: a worker process that holds the engine, and a pool of them.

vLLM pins its own torch, so it lives in .venv-vllm and runs as a child process (stylemap/teacher/worker.py)
that this module feeds JSON-line batches; the pipeline's venv never imports vLLM. The engine starts once
per stage run (`with VllmWorker.for_labels(p, model) as worker:`), and every shard reuses it.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from stylemap.params import Params

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# JSON without free whitespace: a small model otherwise pads with newlines until max_tokens.
STRUCTURED = {"backend": "xgrammar", "disable_any_whitespace": True}


class WorkerError(RuntimeError):
    """The vLLM worker could not start or stopped; the message names the cause and its log tail."""


class VllmWorker:
    """A `stylemap.teacher.worker` child process holding one vLLM engine.

    `generate` sends one batch and waits at most `timeout_s` per request in it (requests may run one after
    another on CPU). A timeout or a dead worker kills the process group and retries the batch on a fresh
    worker up to `retries` times; after that every request of the batch comes back failed with the reason.
    Per-request errors reported by vLLM (e.g. a prompt over max_model_len) are deterministic: not retried.

    Data parallel on GPUs: start one worker per GPU with env={"CUDA_VISIBLE_DEVICES": str(i)} and deal
    shards to them; on CPU one worker uses the machine.
    """

    def __init__(self, engine: dict, *, timeout_s: float, retries: int, start_timeout_s: float = 1800.0,
                 python: str | Path = VLLM_PYTHON, argv: list[str] | None = None, env: dict | None = None):
        self.engine = engine
        self.timeout_s = timeout_s
        self.retries = retries
        self.start_timeout_s = start_timeout_s
        self.argv = argv or [str(python), "-m", "stylemap.teacher.worker", "--engine", json.dumps(engine)]
        self.env = {**os.environ, **(env or {})}
        self.info: dict = {}
        self.failures: list[str] = []  # one line per timeout/crash, for the stage log
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._log: deque[str] = deque(maxlen=40)
        self._timed_out: float | None = None

    @classmethod
    def for_labels(cls, p: Params, model: str | Path, env: dict | None = None) -> VllmWorker:
        """An engine for label.model; `model` is that param resolved (`Project.model`: a local folder as a Path,
        which must hold a converted model, or a Hub id)."""
        if isinstance(model, Path) and not (model / "config.json").exists():
            raise WorkerError(f"label.model {model} has no config.json: run `dvc repro convert_llm` first")
        engine = {"structured_outputs_config": STRUCTURED, **p.label.engine, "model": str(model),
                  "max_model_len": p.label.max_model_len, "seed": p.seed}
        return cls(engine, timeout_s=p.label.timeout_s, retries=p.label.retries, env=env)

    @classmethod
    def for_descriptions(cls, p: Params, env: dict | None = None) -> VllmWorker:
        # one image and no video per prompt: startup profiling then reserves memory for one image only
        engine = {"limit_mm_per_prompt": {"image": 1, "video": 0}, **p.describe.engine, "model": p.describe.model,
                  "max_model_len": p.describe.max_model_len, "seed": p.seed}
        return cls(engine, timeout_s=p.describe.timeout_s, retries=p.describe.retries, env=env)

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
        self._proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.PIPE,
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
                line = self._read(self.timeout_s * len(requests))
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


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES, else what nvidia-smi lists, else none (CPU)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


class WorkerPool:
    """Data parallelism: VllmWorker engine replicas, each pinned to its own GPUs with CUDA_VISIBLE_DEVICES.

    Shards run in threads (`stylemap.shards.map_shards(threads=len(pool))`); each takes a free worker for
    the duration of its shard with `lease()`. A replica takes `gpus_per_replica` GPUs (vLLM's
    tensor_parallel_size); `replicas` 0 means as many as the visible GPUs hold (one on a CPU box), and more
    replicas than that is an error rather than two engines sharing a GPU.
    """

    def __init__(self, make: Callable[[dict | None], VllmWorker], replicas: int = 0, gpus_per_replica: int = 1):
        gpus = visible_gpus()
        n = replicas or max(len(gpus) // gpus_per_replica, 1)
        if gpus and n * gpus_per_replica > len(gpus):
            raise WorkerError(f"{n} replicas x {gpus_per_replica} GPU(s) each need {n * gpus_per_replica} GPUs, "
                              f"{len(gpus)} visible ({','.join(gpus)}): lower `replicas` or tensor_parallel_size")
        k = gpus_per_replica
        envs = [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * k:(i + 1) * k])} if gpus else None for i in range(n)]
        self.workers = [make(env) for env in envs]
        self._free: queue.Queue = queue.Queue()

    def __len__(self) -> int:
        return len(self.workers)

    def __enter__(self) -> WorkerPool:
        with ThreadPoolExecutor(len(self.workers)) as starting:  # engines load their weights in parallel
            list(starting.map(VllmWorker.start, self.workers))
        for worker in self.workers:
            self._free.put(worker)
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.close()

    @contextmanager
    def lease(self):
        worker = self._free.get()
        try:
            yield worker
        finally:
            self._free.put(worker)


def _pump(stream, sink, mark_eof: bool) -> None:
    """Move a child's output lines to `sink` (a reader thread, so neither pipe can fill up and block it)."""
    for line in stream:
        sink(line.rstrip("\n"))
    if mark_eof:
        sink(None)
