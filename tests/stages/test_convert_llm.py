"""convert_llm converts Gemma only when label.model names its output; production labels with a Hub model, so
there it writes a manifest saying so, in no time. (The conversion itself, GGUF -> folder, is checked token for
token in tests/teacher/test_gemma.py.)"""
import importlib
import json

from stylemap import paths
from tests.support.fixtures import write_params

convert_llm = importlib.import_module("stages.convert_llm")


def test_production_converts_nothing(tmp_path):
    params = write_params(tmp_path, {"profile": "production"})
    assert params.label.model == "Qwen/Qwen2.5-7B-Instruct"
    manifest = convert_llm.main(tmp_path)
    out = tmp_path / paths.LLM_MODEL
    assert manifest == {"converted": False, "reason": f"label.model is Qwen/Qwen2.5-7B-Instruct, not {paths.LLM_MODEL}"}
    assert [f.name for f in out.iterdir()] == ["conversion.json"]
    assert json.loads((out / "conversion.json").read_text()) == manifest


def test_the_cpu_profile_converts_into_label_models_folder(tmp_path, monkeypatch):
    assert write_params(tmp_path).label.model == paths.LLM_MODEL
    calls = []
    monkeypatch.setattr(convert_llm, "assemble_gguf", lambda scratch: scratch / "model.gguf")
    monkeypatch.setattr(convert_llm, "convert", lambda gguf, out: calls.append((gguf.name, out)) or
                        {"source": gguf.name, "parameters": 1, "seconds": 0.0})
    convert_llm.main(tmp_path)
    assert calls == [("model.gguf", tmp_path / paths.LLM_MODEL)]
