"""Prompt batches: one prompt a line, dynamic prompts ``{red|green|blue}`` and wildcards ``__name__``.

Expansion is the dynamicprompts library (the syntax of sd-dynamic-prompts): every combination, or ``count``
random picks that the same ``seed`` repeats. Wildcards are files ``<data dir>/wildcards/<name>.txt``, one value
a line (``#`` starts a comment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from masuka.errors import InvalidInput

MAX_PROMPTS = 1000
WILDCARD = re.compile(r"__([\w\-/.]+?)__")


@dataclass(frozen=True)
class Prompt:
    """One expanded prompt and the template it came from (equal when nothing was expanded)."""

    text: str
    template: str


def prompt_lines(text: str) -> list[str]:
    """The prompts of a file or textbox: one a line; blank lines and ``#`` comments are skipped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.lstrip().startswith("#")]


def expand_prompts(wildcards: Path, templates: list[str], count: int = 0, seed: int = 0) -> list[Prompt]:
    """Every combination of each template (``count == 0``), or ``count`` random picks of each from ``seed``."""
    from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager
    from pyparsing import ParseBaseException

    if count < 0 or count > MAX_PROMPTS:
        raise InvalidInput(f"Random picks must be between 1 and {MAX_PROMPTS} (got {count}).")
    wildcards.mkdir(parents=True, exist_ok=True)  # where the user adds wildcard files
    manager = WildcardManager(wildcards)
    expanded: list[Prompt] = []
    for template in templates:
        for name in WILDCARD.findall(template):
            if not manager.get_values(name):
                raise InvalidInput(f"The wildcard __{name}__ has no values: add lines to "
                                   f"{wildcards / (name + '.txt')}.")
        try:
            if count:
                texts = RandomPromptGenerator(manager).generate(template, count,
                                                                seeds=[seed + i for i in range(count)])
            else:
                texts = CombinatorialPromptGenerator(manager).generate(template, max_prompts=MAX_PROMPTS + 1)
        except ParseBaseException as error:
            raise InvalidInput(f"The prompt {template[:60]!r} has unbalanced braces or bars: {error}.") from None
        expanded.extend(Prompt(" ".join(str(text).split()), template) for text in texts)
        if len(expanded) > MAX_PROMPTS:
            raise InvalidInput(f"These prompts expand to more than {MAX_PROMPTS} images: use random picks "
                               "or fewer choices.")
    return expanded
