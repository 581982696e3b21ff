"""The vLLM side of the teacher: one offline engine serving JSON-line batches over stdin/stdout.

Runs under .venv-vllm's python (vLLM pins its own torch), started by `stylemap.teacher.client.VllmWorker` (stdlib and `protocol.py` only):

    .venv-vllm/bin/python -m stylemap.teacher.worker --engine '{"model": "data/models/gemma3-270m", ...}'

The engine starts once, then prints one ready line: {"ready": true, "vllm_version", "model",
"max_model_len"}. Each stdin line is one batch:

    {"requests": [{"prompt": str} | {"prompt_token_ids": [int]} | {"messages": [chat messages]}],
     "sampling": {"temperature", "max_tokens", "seed", "json_schema" | "choice"}}

and is answered by one line {"results": [protocol.Result as a dict]} in request
order, preceded by one heartbeat line {"progress": n} each time a request finishes: the parent's timeout
is then flat (no request finished for timeout_s seconds = a hung engine), however long the batch. Chat messages use the OpenAI shape; an image is {"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}. A request vLLM rejects (e.g. a prompt longer than max_model_len) comes back
with `error` set and never stops the worker; a dead engine exits non-zero so the parent restarts it.
The worker exits cleanly at stdin EOF, so a parent that dies (even SIGKILL) never leaves it running.

One worker holds one engine (a bigger model on several GPUs passes "tensor_parallel_size" in --engine); more
engines, one per GPU or across nodes, are the Ray engine's (stylemap/teacher/ray_llm.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

from stylemap.teacher.protocol import CPU_DEFAULTS, Result, sampling_kwargs


def protocol_stream():
    """Keep the real stdout for protocol lines; everything else printed (vLLM logs, child processes) -> stderr."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


def build_engine(engine_args: dict):
    from vllm import LLM
    from vllm.platforms import current_platform

    args = {**(CPU_DEFAULTS if current_platform.is_cpu() else {}), **engine_args}
    return LLM(**args)


def sampling_params(spec: dict):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    kwargs = sampling_kwargs(spec)
    structured = kwargs.pop("structured_outputs", None)
    return SamplingParams(**kwargs, structured_outputs=structured and StructuredOutputsParams(**structured))


def _result(output) -> dict:
    completion = output.outputs[0]
    return Result(completion.text, list(completion.token_ids), completion.finish_reason).to_dict()


def _error(err: BaseException) -> dict:
    return Result.failed(f"{type(err).__name__}: {err}").to_dict()


def heartbeat(out):
    """A progress bar for vLLM's `use_tqdm` that writes {"progress": n} to the parent as requests finish (vLLM
    also wraps the iterable of requests it adds in one: that passes through)."""
    class Heartbeat:
        def __init__(self, total: int = 0, **_):
            self.n, self.total, self.postfix, self.start = 0, total, "", time.monotonic()

        @property
        def format_dict(self) -> dict:  # vLLM reads the elapsed time for its speed estimate
            return {"elapsed": max(time.monotonic() - self.start, 1e-9)}

        def update(self, n: int = 1) -> None:
            self.n += n
            out.write(json.dumps({"progress": self.n}) + "\n")

        def refresh(self) -> None:
            pass

        close = refresh

    def progress(iterable=None, **kwargs):
        return iterable if iterable is not None else Heartbeat(**kwargs)

    return progress


def _run(llm, requests: list[dict], params, progress) -> list:
    chats = [r["messages"] for r in requests if "messages" in r]
    if chats and len(chats) != len(requests):
        raise ValueError("a batch mixes chat and text requests")
    if chats:
        return llm.chat(chats, params, use_tqdm=progress)
    return llm.generate(requests, params, use_tqdm=progress)


def serve_batch(llm, batch: dict, progress=False) -> list[dict]:
    """Results for one batch; if vLLM rejects the batch, each request is retried alone to find the culprit."""
    from vllm.v1.engine.exceptions import EngineDeadError

    requests = batch["requests"]
    params = sampling_params(batch.get("sampling", {}))
    try:
        return [_result(o) for o in _run(llm, requests, params, progress)]
    except EngineDeadError:
        raise
    except Exception:  # noqa: BLE001 - one bad request must not fail the other requests of its batch
        results = []
        for request in requests:
            try:
                results.append(_result(_run(llm, [request], params, progress)[0]))
            except EngineDeadError:
                raise
            except Exception as err:  # noqa: BLE001 - reported back per request, with its text
                results.append(_error(err))
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", required=True, help="JSON object of vllm.LLM keyword arguments")
    args = parser.parse_args(argv)
    out = protocol_stream()
    import vllm

    llm = build_engine(json.loads(args.engine))
    config = llm.llm_engine.model_config
    out.write(json.dumps({"ready": True, "vllm_version": vllm.__version__, "model": config.model,
                          "max_model_len": config.max_model_len}) + "\n")
    for line in sys.stdin:
        try:
            reply = {"results": serve_batch(llm, json.loads(line), heartbeat(out))}
        except Exception as err:  # noqa: BLE001
            from vllm.v1.engine.exceptions import EngineDeadError

            if isinstance(err, EngineDeadError):
                traceback.print_exc()
                return 1
            reply = {"results": [], "error": f"bad batch: {type(err).__name__}: {err}"}
        try:
            out.write(json.dumps(reply) + "\n")
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
