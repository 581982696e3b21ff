"""Midjourney syntax is stripped from prompts, and what was stripped is counted."""
from __future__ import annotations

from collections import Counter

import pytest

from stylemap.corpus.syntax import SYNTAXES, strip_midjourney


@pytest.mark.parametrize("prompt, clean, params", [
    ("a castle on a hill, oil painting --ar 16:9 --v 5", "a castle on a hill, oil painting", 2),
    ("portrait of a fox --stylize 750 --no plants, trees --q 2", "portrait of a fox", 3),
    ("neon city —ar 3:2", "neon city", 1),
    ("anime girl --niji", "anime girl", 1),
    ("a well-lit room, mid-century style", "a well-lit room, mid-century style", 0),  # hyphens are not params
    ("no params at all", "no params at all", 0),
])
def test_trailing_parameters_are_stripped_and_counted(prompt, clean, params):
    counts = Counter()
    assert strip_midjourney(prompt, counts) == clean
    assert counts["parameters"] == params and counts["prompts_with_parameters"] == (params > 0)


def test_leading_image_urls_are_stripped_and_counted():
    counts = Counter()
    out = strip_midjourney("https://s.mj.run/abc <https://x.y/z.png> a cat in watercolor --ar 1:1", counts)
    assert out == "a cat in watercolor" and counts == Counter(image_urls=2, parameters=1, prompts_with_parameters=1)


def test_plain_syntax_leaves_prompts_alone():
    counts = Counter()
    assert SYNTAXES["plain"]("a castle --ar 16:9", counts) == "a castle --ar 16:9" and not counts
