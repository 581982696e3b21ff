"""Build a tiny, randomly initialised BLIP-2 (weights, tokenizer, processor, chat template) fully offline.

It exercises the describe path (image -> chat request -> vLLM multimodal engine -> text) without any
download; its text is noise by construction and is never presented as a description.
Why BLIP-2 (ViT + Q-Former + OPT): torchvision cannot be present in .venv-vllm (PyPI's torchvision for
torch 2.13 is a CUDA build that fails to load next to torch+cpu and breaks `import transformers`), and in
vLLM 0.32 every CLIP/SigLIP-based VLM (LLaVA*, PaliGemma, ...) resolves its vision encoder through a
module that imports torchvision, as do Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Gemma 3, InternVL and LFM2-VL.
(Qwen2-VL fails earlier too: transformers 5.19's Qwen2VLProcessor requires a video processor, and all
video processors need torchvision.) BLIP-2 needs none of it, and its processor builds from code (BLIP's
PIL image processor). The tokenizer is a byte-level BPE (256 byte tokens, no merges) from `tokenizers`.
On a GPU machine the CUDA `vllm` wheel brings a working torchvision, so Qwen2.5-VL serves there.

Runs in .venv-vllm: `.venv-vllm/bin/python stylemap/teacher/tiny_vlm.py DEST` (tests and bench/bench_labels.py run it).
"""
from __future__ import annotations

import sys
from pathlib import Path

SPECIAL = ["<pad>", "</s>", "<image>"]
IMAGE_SIZE = 112
QUERY_TOKENS = 8  # image tokens per image (Q-Former queries)
# BLIP-2's vLLM processor inserts the image tokens itself, so the template renders text only.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(byte_chars)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="</s>", eos_token="</s>")


def build(dest: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    dest = Path(dest)
    tokenizer = build_tokenizer()
    image_processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=QUERY_TOKENS)
    processor.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Blip2Config(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": IMAGE_SIZE, "patch_size": 14},
        qformer_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "encoder_hidden_size": 32, "vocab_size": 64},
        text_config={"model_type": "opt", "vocab_size": len(tokenizer), "hidden_size": 128, "ffn_dim": 256,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "word_embed_proj_dim": 128,
                     "max_position_embeddings": 4096, "bos_token_id": ids["</s>"], "eos_token_id": ids["</s>"],
                     "pad_token_id": ids["<pad>"]},
        num_query_tokens=QUERY_TOKENS, image_token_index=ids["<image>"],
    )
    torch.manual_seed(seed)
    Blip2ForConditionalGeneration(config).eval().save_pretrained(dest)
    processor.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


if __name__ == "__main__":
    print(build(sys.argv[1]))
