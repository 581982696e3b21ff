"""The few-shot label prompt, as one completion prompt (base model) or as chat turns (Instruct model)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from stylemap import runner
from stylemap.paths import REPO
from stylemap.teacher import client
from stylemap.teacher.label import fewshot_messages, fewshot_template, label_work
from tests.support.fixtures import make_params

FEWSHOT = REPO / "stylemap/teacher/prompts/label_fewshot.txt"


class RecordingWorker:
    """Stands in for the vLLM worker: records the requests, answers every one with the same JSON."""

    vllm_version = "test"

    def __init__(self, *_, **__):
        self.requests: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def generate(self, requests, sampling):
        self.requests += requests
        return [{"text": '{"styles":["watercolor","impressionism","landscape"]}', "error": None,
                 "finish_reason": "stop"} for _ in requests]


def test_the_completion_prompt_ends_without_a_trailing_space():
    template = fewshot_template(FEWSHOT)
    assert template.endswith("Description: {description}\nStyles:")


def test_chat_turns_carry_the_instruction_every_example_and_the_description():
    turns = fewshot_messages(FEWSHOT, "a misty harbour in soft washes")
    assert turns[0]["role"] == "system" and turns[0]["content"].startswith("Each image description below")
    assert [t["role"] for t in turns[1:]] == ["user", "assistant"] * 10 + ["user"]
    assert turns[-1]["content"] == "Description: a misty harbour in soft washes"
    answers = [json.loads(t["content"])["styles"] for t in turns if t["role"] == "assistant"]
    assert all(len(a) >= 3 for a in answers) and not any("{description}" in t["content"] for t in turns)


def test_a_template_without_the_final_description_is_refused(tmp_path):
    bad = tmp_path / "fewshot.txt"
    bad.write_text("Label these.\n\nDescription: a cat\nStyles: {\"styles\":[\"a\",\"b\",\"c\"]}\n{description}\n")
    with pytest.raises(ValueError, match="ends with 'Description: {description}'"):
        fewshot_messages(bad, "x")


@pytest.mark.parametrize("prompt", ["completion", "chat"])
def test_label_llm_sends_the_prompt_form_its_params_ask_for(prompt, taxonomy, monkeypatch):
    def label(p, worker):
        monkeypatch.setattr(client, "VllmWorker", lambda *a, **kw: worker)
        return runner.apply(label_work(p.label, p.seed, p.label.model, taxonomy, FEWSHOT), df)

    p = make_params({"label.prompt": prompt})
    worker = RecordingWorker()
    df = pd.DataFrame({"image_id": ["s/a", "s/b"], "description": ["a harbour at dawn", "a cat"], "status": "ok"})
    out = label(p, worker)
    assert out["llm_styles"].map(list).tolist() == [["watercolor", "impressionism"]] * 2
    if prompt == "chat":
        assert [r["messages"][-1]["content"] for r in worker.requests] == ["Description: a harbour at dawn",
                                                                          "Description: a cat"]
    else:
        assert all(r["prompt"].endswith("Description: a cat\nStyles:") or r["prompt"].endswith(
            "Description: a harbour at dawn\nStyles:") for r in worker.requests)
    other = label(make_params({"label.prompt": "chat" if prompt == "completion" else "completion"}), RecordingWorker())
    assert other["llm_prompt_hash"].iloc[0] != out["llm_prompt_hash"].iloc[0]  # provenance tells the forms apart
