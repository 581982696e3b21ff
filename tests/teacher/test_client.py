"""VllmWorker's protocol, timeouts and crash handling, against stand-in worker processes (no vLLM needed).

The stand-ins speak the worker's JSON-line protocol; what they do wrong (hang, die) is what the parent
must survive. The real engine's behaviour on bad requests is tested in tests/teacher/test_gemma.py.
"""
import io
import json
import sys

import pytest
from PIL import Image

import pandas as pd

from stylemap.teacher import client
from stylemap.teacher.client import VllmWorker, WorkerError
from stylemap.teacher.describe import image_data_url, status
from stylemap.teacher.engine import ModelMissing, VllmSpec, describe_spec, label_spec
from stylemap.teacher.label import STYLE_SCHEMA, parse_styles

READY = 'import json, sys, time; print(json.dumps({"ready": True, "vllm_version": "stand-in"}), flush=True)\n'
ECHO = READY + (
    "for line in sys.stdin:\n"
    "    reqs = json.loads(line)['requests']\n"
    "    print(json.dumps({'results': [{'text': r['prompt'].upper(), 'token_ids': [], 'finish_reason': 'stop',"
    " 'error': None} for r in reqs]}), flush=True)\n"
)
HANG = READY + "for line in sys.stdin:\n    time.sleep(60)\n"
CRASH = READY + "for line in sys.stdin:\n    sys.exit(3)\n"
# one request finished every 0.3 s, as the real worker reports them, then the reply; or one, then a hang
SLOW = READY + (
    "for line in sys.stdin:\n"
    "    reqs = json.loads(line)['requests']\n"
    "    for n in range(len(reqs)):\n"
    "        time.sleep(0.3); print(json.dumps({'progress': n + 1}), flush=True)\n"
    "    print(json.dumps({'results': [{'text': 'ok', 'token_ids': [], 'finish_reason': 'stop', 'error': None}"
    " for r in reqs]}), flush=True)\n"
)
# each reply says which message of the session it answers and how many requests that message held
COUNT = READY + (
    "for k, line in enumerate(sys.stdin):\n"
    "    reqs = json.loads(line)['requests']\n"
    "    print(json.dumps({'results': [{'text': f'{k}:{len(reqs)}', 'token_ids': [], 'finish_reason': 'stop',"
    " 'error': None} for r in reqs]}), flush=True)\n"
)
STALL = READY + "for line in sys.stdin:\n    print(json.dumps({'progress': 1}), flush=True); time.sleep(60)\n"


def _worker(script, **kw):
    return VllmWorker({"model": "stand-in"}, argv=[sys.executable, "-c", script], **kw)


def test_echo_round_trip_and_clean_exit_on_eof():
    with _worker(ECHO, timeout_s=5, retries=0) as w:
        out = w.generate([{"prompt": "a"}, {"prompt": "b"}], {"max_tokens": 4})
        assert [r["text"] for r in out] == ["A", "B"] and w.vllm_version == "stand-in"
        proc = w._proc
    assert proc.returncode == 0  # stdin EOF ended it, no kill needed


def test_the_timeout_is_flat_while_requests_keep_finishing():
    """8 requests finishing 0.3 s apart take 2.4 s under a 0.5 s timeout: no timeout, since each one reports;
    a worker that reports one and stalls is given up after 0.5 s, not 0.5 s per request."""
    with _worker(SLOW, timeout_s=0.5, retries=0) as w:
        out = w.generate([{"prompt": str(i)} for i in range(8)], {})
        assert [r["text"] for r in out] == ["ok"] * 8 and not w.failures
    with _worker(STALL, timeout_s=0.5, retries=0) as w:
        out = w.generate([{"prompt": str(i)} for i in range(8)], {})
        assert all("timeout: no reply within 0.5 s" in r["error"] for r in out) and len(w.failures) == 1


def test_a_shard_reaches_the_engine_as_one_list(monkeypatch):
    """vLLM batches a list itself (continuous batching): the whole shard goes in one message, not in fixed batches
    waited on one after another; a request that cannot be sent is answered with its reason, unsent."""
    monkeypatch.setattr(client, "VllmWorker", lambda engine, **kw: _worker(COUNT, **kw))
    spec = VllmSpec({"model": "stand-in"}, {}, chat=False, vision=False, batch_size=4, replicas=0, timeout_s=5,
                    retries=0)
    rows = pd.DataFrame({"image_id": [f"s/{i}" for i in range(40)],
                         "request": [json.dumps({"prompt": str(i)}) for i in range(39)] + [None],
                         "reason": [""] * 39 + ["image decode: truncated"]})
    with spec.local() as infer:
        out = infer(rows)
    assert out["text"].iloc[:39].tolist() == ["0:39"] * 39 and set(out["vllm_version"]) == {"stand-in"}
    assert out.iloc[39][["text", "token_ids", "finish_reason", "error"]].tolist() == [
        None, None, None, "image decode: truncated"]
    assert out["image_id"].tolist() == rows["image_id"].tolist() and "request" not in out


def test_timeout_gives_failed_results_and_retries_on_a_fresh_worker():
    with _worker(HANG, timeout_s=0.5, retries=1) as w:
        out = w.generate([{"prompt": "a"}, {"prompt": "b"}], {})
        assert len(out) == 2 and all(r["text"] is None and r["error"].startswith("timeout") for r in out)
        assert len(w.failures) == 2  # first try + one retry, each on its own worker process


def test_crash_is_reported_with_exit_code_and_worker_restarts():
    with _worker(CRASH, timeout_s=5, retries=2) as w:
        out = w.generate([{"prompt": "a"}], {})
        assert "exited with code 3" in out[0]["error"] and len(w.failures) == 3


def test_missing_venv_and_dead_start_name_the_cause(tmp_path):
    with pytest.raises(WorkerError, match="vLLM venv is missing"):
        VllmWorker({"model": "m"}, timeout_s=1, retries=0, python=tmp_path / "nope" / "python").start()
    with pytest.raises(WorkerError, match="(?s)did not start.*code 2.*boom"):
        _worker("import sys; print('boom', file=sys.stderr); sys.exit(2)", timeout_s=1, retries=0).start()


def test_label_spec_requires_the_converted_model(make_params, tmp_path):
    p = make_params({"label": {"model": "data/models/missing"}})
    with pytest.raises(ModelMissing, match="convert_llm"):
        label_spec(p.label, tmp_path / "data/models/missing", p.seed, STYLE_SCHEMA)


def test_image_data_url_bounds_the_longest_side_as_a_jpeg():
    buf = io.BytesIO()
    Image.new("RGB", (1000, 250), (10, 200, 30)).save(buf, format="WEBP")
    url = image_data_url(buf.getvalue(), 448)
    import base64

    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert url.startswith("data:image/jpeg;base64,") and img.format == "JPEG" and img.size == (448, 112)
    assert max(abs(a - b) for a, b in zip(img.convert("RGB").getpixel((200, 50)), (10, 200, 30))) <= 3


def test_parse_styles_rejects_cut_and_malformed_output():
    text = '{"styles":["oil  painting","baroque","x"]}'
    assert parse_styles(text, "stop", None) == (["oil painting", "baroque", "x"], None)
    raw, err = parse_styles(text, "length", None)
    assert raw is None and "max_tokens" in err
    raw, err = parse_styles('{"tags": []}', "stop", None)
    assert raw is None and "schema" in err


def test_a_description_cut_at_max_tokens_is_truncated_not_ok():
    text = "Subjects: a cat. Technique: watercolor"
    assert status(text, "stop", None) == "ok"
    assert status(text, "length", None) == "truncated"
    styled = "1. Subjects: a cat on a roof.\n**2. Artistic technique and style:** a loose watercolor wash, ink out"
    assert status(styled, "length", None) == "truncated_styled"  # cut inside section 2: its style text is there
    assert status("1. Subjects: a cat, as seen in 2.5D games", "length", None) == "truncated"  # no section 2 line
    assert status("CANNOT ANALYSE", "length", None) == "cannot_analyse"
    assert status(None, None, "image decode: x") == "failed" and status(" ", "stop", None) == "empty"


def test_engine_arguments_come_from_params(make_params, tmp_path):
    p = make_params({"describe.vllm_args": {"gpu_memory_utilization": 0.8, "tensor_parallel_size": 2},
                     "label.vllm_args": {"max_num_seqs": 8}})
    describe = describe_spec(p.describe, p.seed)
    assert describe.vllm_args["gpu_memory_utilization"] == 0.8
    assert describe.vllm_args["limit_mm_per_prompt"] == {"image": 1, "video": 0} and describe.gpus_per_replica == 2
    assert describe.chat and describe.vision and describe.sampling["max_tokens"] == p.describe.max_tokens
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.json").write_text("{}")
    label = label_spec(p.label, tmp_path / "m", p.seed, STYLE_SCHEMA)
    assert label.vllm_args["max_num_seqs"] == 8 and label.vllm_args["model"] == str(tmp_path / "m")
    assert label.vllm_args["seed"] == p.seed and label.sampling["json_schema"] == STYLE_SCHEMA and not label.vision


def test_sampling_specs_translate_once_for_both_transports():
    from stylemap.teacher.protocol import sampling_kwargs

    assert sampling_kwargs({"max_tokens": 4, "json_schema": {"type": "object"}}) == {
        "max_tokens": 4, "structured_outputs": {"json": {"type": "object"}}}
    assert sampling_kwargs({"max_tokens": 1, "choice": ["a", "b"]}) == {
        "max_tokens": 1, "structured_outputs": {"choice": ["a", "b"]}}
    assert sampling_kwargs({"temperature": 0.0}) == {"temperature": 0.0}
