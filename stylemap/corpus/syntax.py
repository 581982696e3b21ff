"""Platform prompt syntax that is not part of the description: stripped before the prompt filters, and counted.

Midjourney prompts end in parameters (`--ar 16:9 --v 5 --stylize 750`, `—no plants`; Midjourney's docs:
"parameters are always added to the end of a prompt") and may start with image-prompt URLs. Neither says
anything about the style words, and both would skew word counts, language detection and the labellers.
Another platform's syntax is one more entry in SYNTAXES.

The same parameters name the model that made the image (`--v 5.2`, `--version 6`, `--niji 5`): GENERATORS reads it
from the prompt as written, before the strip; a prompt without one names no model (its default changed over
time), and stays unknown.
"""
from __future__ import annotations

import re
from collections import Counter

MJ_PARAMETERS = re.compile(r"(?:^|\s)(?:--|—)[A-Za-z]")  # where the trailing parameter block starts
MJ_PARAMETER = re.compile(r"(?:--|—)[A-Za-z]+")
MJ_IMAGE_URL = re.compile(r"^(?:<?https?://\S+>?\s+)+")


def strip_midjourney(prompt: str, counts: Counter) -> str:
    """The prompt without its leading image URLs and trailing parameters; `counts` gets what was removed."""
    urls = MJ_IMAGE_URL.match(prompt)
    if urls:
        counts["image_urls"] += len(urls.group(0).split())
        prompt = prompt[urls.end():]
    start = MJ_PARAMETERS.search(prompt)
    if start:
        counts["parameters"] += len(MJ_PARAMETER.findall(prompt[start.start():]))
        counts["prompts_with_parameters"] += 1
        prompt = prompt[:start.start()]
    return prompt.strip()


SYNTAXES = {"plain": lambda prompt, counts: prompt, "midjourney": strip_midjourney}

MJ_MODEL = re.compile(r"(?:--|—)(v|version|niji)(?:\s+(\d+(?:\.\d+)?))?(?=\s|$)", re.IGNORECASE)


def midjourney_model(prompt: str) -> str | None:
    """The model a Midjourney prompt's parameters ask for (`midjourney-v5.2`, `niji-5`, `niji`), the last one
    given winning as in Midjourney; None when the prompt names none."""
    found = [(kind.lower(), version) for kind, version in MJ_MODEL.findall(prompt) if version or kind.lower() == "niji"]
    if not found:
        return None
    kind, version = found[-1]
    return f"niji-{version}" if kind == "niji" and version else "niji" if kind == "niji" else f"midjourney-v{version}"


GENERATORS = {"plain": lambda prompt: None, "midjourney": midjourney_model}
