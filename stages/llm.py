"""The vLLM teacher, parent side: a worker process that holds the engine, and the two labelling cores.

vLLM pins its own torch, so it lives in .venv-vllm and runs as a child process (stages/vllm_worker.py)
that this module feeds JSON-line batches; the pipeline's venv never imports vLLM. The engine starts once
per stage run (`with VllmWorker.for_labels(p) as worker:`), and every shard reuses it.

- `describe_vlm`: stage one of the two-stage prompt — a VLM analyses each image (stages/prompts/describe.txt).
- `label_llm`: stage two — an LLM turns a description into >= 3 raw style names, constrained to the JSON
  schema {"styles": [...]}, mapped to taxonomy categories (few-shot prompt: params `label.fewshot`).
Both return exactly one row per input row; failures are rows with a status and the error text.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from PIL import Image

from stages.params import Params
from stages.sample import decode_rgb

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
DESCRIBE_PROMPT = ROOT / "stages" / "prompts" / "describe.txt"
CANNOT_ANALYSE = "CANNOT ANALYSE"  # the describe prompt asks the model to answer exactly this when it cannot
MAX_RAW_STYLES = 6
STYLE_SCHEMA = {
    "type": "object",
    "properties": {"styles": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                              "minItems": 3, "maxItems": MAX_RAW_STYLES}},
    "required": ["styles"],
    "additionalProperties": False,
}
# JSON without free whitespace: a small model otherwise pads with newlines until max_tokens.
STRUCTURED = {"backend": "xgrammar", "disable_any_whitespace": True}


class WorkerError(RuntimeError):
    """The vLLM worker could not start or stopped; the message names the cause and its log tail."""


class VllmWorker:
    """A `stages.vllm_worker` child process holding one vLLM engine.

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
        self.argv = argv or [str(python), "-m", "stages.vllm_worker", "--engine", json.dumps(engine)]
        self.env = {**os.environ, **(env or {})}
        self.info: dict = {}
        self.failures: list[str] = []  # one line per timeout/crash, for the stage log
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._log: deque[str] = deque(maxlen=40)
        self._timed_out: float | None = None

    @classmethod
    def for_labels(cls, p: Params, env: dict | None = None) -> VllmWorker:
        model = Path(p.label.model)
        if p.label.model.startswith(("data/", "/", ".")) and not (model / "config.json").exists():
            raise WorkerError(f"label.model {model} has no config.json: run `dvc repro convert_llm` first")
        engine = {"model": str(model), "max_model_len": p.label.max_model_len, "seed": p.seed,
                  "structured_outputs_config": STRUCTURED}
        return cls(engine, timeout_s=p.label.timeout_s, retries=p.label.retries, env=env)

    @classmethod
    def for_descriptions(cls, p: Params, env: dict | None = None) -> VllmWorker:
        engine = {"model": p.describe.model, "max_model_len": p.describe.max_model_len, "seed": p.seed,
                  "limit_mm_per_prompt": {"image": 1}}
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
                return reply["results"]
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
    """Data parallelism: one VllmWorker (engine replica) per GPU, each pinned with CUDA_VISIBLE_DEVICES.

    Shards run in threads (`stages.shards.map_shards(threads=len(pool))`); each takes a free worker for
    the duration of its shard with `lease()`. `replicas` 0 means one per visible GPU (one on a CPU box).
    """

    def __init__(self, make: Callable[[dict | None], VllmWorker], replicas: int = 0):
        gpus = visible_gpus()
        n = replicas or max(len(gpus), 1)
        envs = [{"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else None for i in range(n)]
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


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def image_data_url(image_bytes: bytes, max_side: int) -> str:
    """Decode as every stage does (upright RGB), shrink so the longest side <= max_side (keeps the VLM's
    token count bounded), re-encode PNG."""
    img = decode_rgb(image_bytes)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def describe_status(result: dict) -> str:
    if result["error"]:
        return "failed"
    text = (result["text"] or "").strip()
    if not text:
        return "empty"
    return "cannot_analyse" if CANNOT_ANALYSE in text.upper() else "ok"


def describe_vlm(df: pd.DataFrame, worker: VllmWorker, p: Params) -> pd.DataFrame:
    """One analysis per image (columns image_id, prompt, image_bytes); one row per input row."""
    template = DESCRIBE_PROMPT.read_text()
    sampling = {"temperature": p.describe.temperature, "max_tokens": p.describe.max_tokens, "seed": p.seed}
    results: list[dict] = [{}] * len(df)
    pending: list[tuple[int, dict]] = []
    for i, (prompt, image_bytes) in enumerate(zip(df["prompt"].fillna(""), df["image_bytes"])):
        try:
            url = image_data_url(image_bytes, p.describe.image_max_side)
        except Exception as err:  # noqa: BLE001 - an undecodable image is a counted failure, not a crash
            detail = re.sub(r" <[^>]*>", "", str(err))  # no object addresses: reruns give identical rows
            results[i] = {"text": None, "error": f"image decode: {type(err).__name__}: {detail}"}
            continue
        text = template.replace("{prompt}", " ".join(str(prompt).split()))
        pending.append((i, {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]}))
    for start in range(0, len(pending), p.describe.batch_size):
        batch = pending[start:start + p.describe.batch_size]
        for (i, _), result in zip(batch, worker.generate([r for _, r in batch], sampling)):
            results[i] = result
    statuses = [describe_status(r) for r in results]
    return pd.DataFrame({
        "image_id": df["image_id"].to_numpy(),
        "description": [(r["text"] or "").strip() or None for r in results],
        "status": statuses,
        "error": [r["error"] for r in results],
        "backend": "vlm", "model": p.describe.model, "prompt_hash": _sha256(template),
        "sampling": json.dumps(sampling, sort_keys=True), "vllm_version": worker.vllm_version,
    })


def fewshot_template(path: str | Path) -> str:
    template = Path(path).read_text().rstrip("\n")  # the answer must follow "Styles: " directly
    if "{description}" not in template:
        raise ValueError(f"{path}: a few-shot template needs a {{description}} placeholder")
    return template


def parse_styles(result: dict) -> tuple[list[str] | None, str | None]:
    """Raw style names from one constrained completion, or the reason there are none."""
    if result["error"]:
        return None, result["error"]
    if result["finish_reason"] == "length":
        return None, f"output cut at max_tokens before the JSON closed: {result['text']!r}"
    try:
        styles = json.loads(result["text"])["styles"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        return None, f"output is not the style schema ({err}): {result['text']!r}"
    return [" ".join(s.split()) for s in styles], None


def label_llm(df: pd.DataFrame, worker: VllmWorker, p: Params, taxonomy) -> pd.DataFrame:
    """Raw style names per description (image_id, description, status) and their taxonomy categories."""
    template = fewshot_template(p.label.fewshot)
    sampling = {"temperature": p.label.temperature, "max_tokens": p.label.max_tokens, "seed": p.seed,
                "json_schema": STYLE_SCHEMA}
    texts = df["description"].fillna("").map(lambda t: " ".join(str(t).split()))
    usable = (df["status"].eq("ok") & texts.ne("")).to_numpy()
    idx = [i for i in range(len(df)) if usable[i]]
    results: dict[int, dict] = {}
    for start in range(0, len(idx), p.label.batch_size):
        chunk = idx[start:start + p.label.batch_size]
        prompts = [{"prompt": template.replace("{description}", texts.iloc[i])} for i in chunk]
        results.update(zip(chunk, worker.generate(prompts, sampling)))
    rows = []
    for i in range(len(df)):
        if not usable[i]:
            rows.append(([], [], [], "skipped_no_description", None))
            continue
        raw, error = parse_styles(results[i])
        if raw is None:
            rows.append(([], [], [], "failed", error))
            continue
        mapped = [taxonomy.to_category(name) for name in raw]
        styles = list(dict.fromkeys(c for c in mapped if c is not None))[:p.label.max_styles]
        rows.append((raw, styles, [n for n, c in zip(raw, mapped) if c is None], "ok", None))
    raw, styles, unmapped, status, error = zip(*rows) if rows else ([], [], [], [], [])
    return pd.DataFrame({
        "image_id": df["image_id"].to_numpy(), "llm_raw": list(raw), "llm_styles": list(styles),
        "llm_unmapped": list(unmapped), "llm_status": list(status), "llm_error": list(error),
        "llm_model": p.label.model, "llm_prompt_hash": _sha256(template),
        "llm_sampling": json.dumps(sampling, sort_keys=True), "vllm_version": worker.vllm_version,
    })
