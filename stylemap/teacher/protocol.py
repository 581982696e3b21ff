"""What crosses between the pipeline and a vLLM engine, defined once for both transports (the local worker and
ray.data.llm): the engine result record and the translation of sampling specs into vLLM's keywords.

Standard library only: `worker.py` imports it under .venv-vllm's Python, where the pipeline's packages are absent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

GiB = 1 << 30
# CPU defaults, each overridable through the teacher's `vllm_args`: torch.compile warm-up costs ~90 s on 2 cores
# (more than a CPU-profile run saves), and vLLM's default KV cache on CPU reserves 92% of RAM.
CPU_DEFAULTS = {"enforce_eager": True, "kv_cache_memory_bytes": GiB}
# JSON without free whitespace: a small model otherwise pads with newlines until max_tokens.
STRUCTURED = {"backend": "xgrammar", "disable_any_whitespace": True}


@dataclass(frozen=True)
class Result:
    """One request's outcome: the completion (text, its token ids, why it stopped) or the error that stopped it."""

    text: str | None = None
    token_ids: list[int] | None = None
    finish_reason: str | None = None  # "stop" | "length" (cut at max_tokens)
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> Result:
        return cls(error=error)

    def to_dict(self) -> dict:
        return asdict(self)


RESULT_FIELDS = [f.name for f in fields(Result)]


def sampling_kwargs(spec: dict) -> dict:
    """A sampling spec {temperature, max_tokens, seed, json_schema | choice} as vllm.SamplingParams keywords, the
    constraint as `structured_outputs` keywords (vllm.sampling_params.StructuredOutputsParams; ray.data.llm builds
    both objects from these dicts)."""
    spec = dict(spec)
    schema, choice = spec.pop("json_schema", None), spec.pop("choice", None)
    if schema is not None:
        spec["structured_outputs"] = {"json": schema}
    elif choice is not None:
        spec["structured_outputs"] = {"choice": choice}
    return spec
