"""What the teachers compute per record: the two stages of the two-stage prompt, and their parsing.

- `describe_by_prompt`: the generation prompt stands in for a description (no model; the CPU profile).
- `describe_vlm`: stage one: a VLM analyses each image (prompts/describe.txt).
- `label_llm`: stage two: an LLM turns a description into >= 3 raw style names, constrained to the JSON
  schema {"styles": [...]}, mapped to taxonomy categories (few-shot prompt: params `label.fewshot`, sent as
  one completion prompt to a base model or as chat turns to an Instruct model: `label.prompt`).
Each returns exactly one row per input row; failures are rows with a status and the error text.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import pandas as pd
from PIL import Image

from stylemap.corpus.images import decode_rgb
from stylemap.labels.taxonomy import Taxonomy
from stylemap.params import Params
from stylemap.teacher.client import VllmWorker

DESCRIBE_PROMPT = Path(__file__).resolve().parent / "prompts" / "describe.txt"
CANNOT_ANALYSE = "CANNOT ANALYSE"  # the describe prompt asks the model to answer exactly this when it cannot
MAX_RAW_STYLES = 6
STYLE_SCHEMA = {
    "type": "object",
    "properties": {"styles": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                              "minItems": 3, "maxItems": MAX_RAW_STYLES}},
    "required": ["styles"],
    "additionalProperties": False,
}


def describe_by_prompt(df: pd.DataFrame) -> pd.DataFrame:
    """The `prompt` backend: description = generation prompt; an empty one is recorded as such."""
    text = df["prompt"].fillna("").str.strip()
    return pd.DataFrame({
        "image_id": df["image_id"], "description": text,
        "status": text.ne("").map({True: "ok", False: "empty"}), "error": None,
        "backend": "prompt", "model": "generation-prompt", "prompt_hash": None, "sampling": None,
        "vllm_version": None,
    })


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
    """ok | failed | empty | cannot_analyse | truncated (cut at max_tokens: an analysis without its end)."""
    if result["error"]:
        return "failed"
    text = (result["text"] or "").strip()
    if not text:
        return "empty"
    if CANNOT_ANALYSE in text.upper():
        return "cannot_analyse"
    return "truncated" if result.get("finish_reason") == "length" else "ok"


def describe_sampling(p: Params) -> dict:
    return {"temperature": p.describe.temperature, "max_tokens": p.describe.max_tokens, "seed": p.seed}


def describe_requests(df: pd.DataFrame, p: Params) -> list[dict | str]:
    """Per image (columns prompt, image_bytes): its chat request (image + analysis prompt), or the reason it
    cannot be sent (a string) when the image does not decode."""
    template = DESCRIBE_PROMPT.read_text()
    requests: list[dict | str] = []
    for prompt, image_bytes in zip(df["prompt"].fillna(""), df["image_bytes"]):
        try:
            url = image_data_url(image_bytes, p.describe.image_max_side)
        except Exception as err:  # noqa: BLE001 - an undecodable image is a counted failure, not a crash
            detail = re.sub(r" <[^>]*>", "", str(err))  # no object addresses: reruns give identical rows
            requests.append(f"image decode: {type(err).__name__}: {detail}")
            continue
        text = template.replace("{prompt}", " ".join(str(prompt).split()))
        requests.append({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]})
    return requests


def describe_frame(df: pd.DataFrame, results: list[dict], p: Params, vllm_version: str) -> pd.DataFrame:
    """The describe shard: one row per image from its engine result {"text", "finish_reason", "error"}."""
    return pd.DataFrame({
        "image_id": df["image_id"].to_numpy(),
        "description": [(r["text"] or "").strip() or None for r in results],
        "status": [describe_status(r) for r in results],
        "error": [r["error"] for r in results],
        "backend": "vlm", "model": p.describe.model, "prompt_hash": _sha256(DESCRIBE_PROMPT.read_text()),
        "sampling": json.dumps(describe_sampling(p), sort_keys=True), "vllm_version": vllm_version,
    })


def generate_all(worker: VllmWorker, requests: list[dict | str], sampling: dict) -> list[dict]:
    """Engine results for the requests, sent as one list (vLLM batches them itself); a string request (a reason
    not to send it) becomes a failed result."""
    results = [{"text": None, "token_ids": None, "finish_reason": None, "error": r} if isinstance(r, str) else None
               for r in requests]
    sent = [i for i, r in enumerate(requests) if not isinstance(r, str)]
    for i, result in zip(sent, worker.generate([requests[i] for i in sent], sampling)):
        results[i] = result
    return results


def describe_vlm(df: pd.DataFrame, worker: VllmWorker, p: Params) -> pd.DataFrame:
    """One analysis per image (columns image_id, prompt, image_bytes); one row per input row."""
    results = generate_all(worker, describe_requests(df, p), describe_sampling(p))
    return describe_frame(df, results, p, worker.vllm_version)


FEWSHOT_EXAMPLE = re.compile(r"Description: (.+)\nStyles: ?(.*)")


def fewshot_template(path: str | Path) -> str:
    """The completion prompt: the file as is, ending in "Styles:" with no trailing space, because the answer's
    first token carries its own space (" {") and a prompt ending in a bare space forces an unnatural split."""
    template = Path(path).read_text().rstrip()
    if "{description}" not in template:
        raise ValueError(f"{path}: a few-shot template needs a {{description}} placeholder")
    return template


def fewshot_messages(path: str | Path, description: str) -> list[dict]:
    """The same few-shot prompt as chat turns, for an Instruct model (vLLM applies its chat template): the
    instruction as the system turn, each example as a user turn and the assistant's JSON answer, then the
    description to label."""
    template = fewshot_template(path)
    instruction = template.split("\nDescription: ", 1)[0].strip()
    examples = FEWSHOT_EXAMPLE.findall(template)
    if not examples or examples[-1][0] != "{description}":
        raise ValueError(f"{path}: a few-shot template ends with 'Description: {{description}}' and 'Styles:'")
    turns = [{"role": "system", "content": instruction}]
    for text, answer in examples[:-1]:
        turns += [{"role": "user", "content": f"Description: {text}"}, {"role": "assistant", "content": answer}]
    return turns + [{"role": "user", "content": f"Description: {description}"}]


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


SKIPPED = "skipped_no_description"


def label_sampling(p: Params) -> dict:
    return {"temperature": p.label.temperature, "max_tokens": p.label.max_tokens, "seed": p.seed,
            "json_schema": STYLE_SCHEMA}


def label_requests(df: pd.DataFrame, p: Params, fewshot: Path) -> list[dict | str]:
    """Per description (columns description, status): the few-shot request, or SKIPPED when there is no usable
    description to label."""
    template = fewshot_template(fewshot)
    requests: list[dict | str] = []
    for text, status in zip(df["description"].fillna(""), df["status"]):
        text = " ".join(str(text).split())
        if status != "ok" or not text:
            requests.append(SKIPPED)
        elif p.label.prompt == "chat":
            requests.append({"messages": fewshot_messages(fewshot, text)})
        else:
            requests.append({"prompt": template.replace("{description}", text)})
    return requests


def label_frame(df: pd.DataFrame, results: list[dict], p: Params, taxonomy: Taxonomy, fewshot: Path,
                vllm_version: str) -> pd.DataFrame:
    """The LLM label shard: raw style names per description and their taxonomy categories."""
    rows = []
    for result in results:
        if result["error"] == SKIPPED:
            rows.append(([], [], [], SKIPPED, None))
            continue
        raw, error = parse_styles(result)
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
        "llm_model": p.label.model, "llm_prompt_hash": _sha256(f"{p.label.prompt}\n{fewshot_template(fewshot)}"),
        "llm_sampling": json.dumps(label_sampling(p), sort_keys=True), "vllm_version": vllm_version,
    })


def label_llm(df: pd.DataFrame, worker: VllmWorker, p: Params, taxonomy: Taxonomy, fewshot: Path) -> pd.DataFrame:
    """Raw style names per description (image_id, description, status) and their taxonomy categories."""
    results = generate_all(worker, label_requests(df, p, fewshot), label_sampling(p))
    return label_frame(df, results, p, taxonomy, fewshot, worker.vllm_version)
