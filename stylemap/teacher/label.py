"""label's LLM work per record: stage two of the two-stage prompt.

An LLM turns a description into >= 3 raw style names, constrained to the JSON schema {"styles": [...]}, mapped
to taxonomy categories. The few-shot prompt (params `label.fewshot`) is sent as one completion prompt to a base
model or as chat turns to an Instruct model (`label.prompt`). One row per input row; a description with nothing
to label, or an answer that does not parse, is a row with its status and the reason.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from stylemap.labels.taxonomy import Taxonomy
from stylemap.params import Label
from stylemap.runner import Work
from stylemap.schemas import LABELLABLE
from stylemap.teacher.describe import sha256
from stylemap.teacher.engine import label_sampling, label_spec, results_of

MAX_RAW_STYLES = 6
STYLE_SCHEMA = {
    "type": "object",
    "properties": {"styles": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 40},
                              "minItems": 3, "maxItems": MAX_RAW_STYLES}},
    "required": ["styles"],
    "additionalProperties": False,
}
DESCRIPTION_COLUMNS = ["image_id", "description", "status"]
FEWSHOT_EXAMPLE = re.compile(r"Description: (.+)\nStyles: ?(.*)")
SKIPPED = "skipped_no_description"


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


def parse_styles(text: str | None, finish_reason: str | None, error: str | None) -> tuple[list[str] | None, str | None]:
    """Raw style names from one constrained completion, or the reason there are none."""
    if error:
        return None, error
    if finish_reason == "length":
        return None, f"output cut at max_tokens before the JSON closed: {text!r}"
    try:
        styles = json.loads(text)["styles"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        return None, f"output is not the style schema ({err}): {text!r}"
    return [" ".join(s.split()) for s in styles], None


def requests(df: pd.DataFrame, prompt: str, fewshot: Path) -> pd.DataFrame:
    """Per description (columns image_id, description, status): the few-shot request as JSON, or SKIPPED when
    there is no usable description to label."""
    template = fewshot_template(fewshot)
    built, reasons = [], []
    for text, state in zip(df["description"].fillna(""), df["status"]):
        text = " ".join(str(text).split())
        if state not in LABELLABLE or not text:
            built.append(None)
            reasons.append(SKIPPED)
            continue
        request = ({"messages": fewshot_messages(fewshot, text)} if prompt == "chat"
                   else {"prompt": template.replace("{description}", text)})
        built.append(json.dumps(request))
        reasons.append("")
    return pd.DataFrame({"image_id": df["image_id"].to_numpy(), "request": built, "reason": reasons})


def records(rows: pd.DataFrame, lab: Label, seed: int, taxonomy: Taxonomy, fewshot: Path) -> pd.DataFrame:
    """The LLM label shard: raw style names per description and their taxonomy categories."""
    rows = results_of(rows)
    out = []
    for text, finish, error in zip(rows["text"], rows["finish_reason"], rows["error"]):
        if error == SKIPPED:
            out.append(([], [], [], SKIPPED, None))
            continue
        raw, error = parse_styles(text, finish, error)
        if raw is None:
            out.append(([], [], [], "failed", error))
            continue
        mapped = [taxonomy.to_category(name) for name in raw]
        styles = list(dict.fromkeys(c for c in mapped if c is not None))[:lab.max_styles]
        out.append((raw, styles, [n for n, c in zip(raw, mapped) if c is None], "ok", None))
    raw, styles, unmapped, status, error = zip(*out) if out else ([], [], [], [], [])
    return pd.DataFrame({
        "image_id": rows["image_id"].to_numpy(), "llm_raw": list(raw), "llm_styles": list(styles),
        "llm_unmapped": list(unmapped), "llm_status": list(status), "llm_error": list(error),
        "llm_model": lab.model, "llm_prompt_hash": sha256(f"{lab.prompt}\n{fewshot_template(fewshot)}"),
        "llm_sampling": json.dumps(label_sampling(lab, seed, STYLE_SCHEMA), sort_keys=True),
        "vllm_version": list(rows["vllm_version"]),
    })


def label_work(lab: Label, seed: int, model: str | Path, taxonomy: Taxonomy, fewshot: Path) -> Work:
    """label's LLM as a runner work over description rows."""
    return Work("label llm", DESCRIPTION_COLUMNS, lambda rows: records(rows, lab, seed, taxonomy, fewshot),
                schema="llm_labels", prepare=lambda df: requests(df, lab.prompt, fewshot),
                inference=label_spec(lab, model, seed, STYLE_SCHEMA))
