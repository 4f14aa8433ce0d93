"""Prompt batches: one prompt a line, dynamic prompts ``{red|green|blue}`` and wildcards ``__name__``.

Expansion is the dynamicprompts library (the syntax of sd-dynamic-prompts): every combination, or ``count``
random picks that the same ``seed`` repeats. Wildcards are files ``<data dir>/wildcards/<name>.txt``, one value
a line (``#`` starts a comment); a value may name other wildcards, but none that leads back to itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput

MAX_PROMPTS = 1000
WILDCARD = re.compile(r"__([\w\-/.*]+?)__")  # a name, or a glob of names (__colours/*__)


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
        raise InvalidInput(f"Random picks must be between 0 (every combination) and {MAX_PROMPTS} (got {count}).")
    wildcards.mkdir(parents=True, exist_ok=True)  # where the user adds wildcard files
    manager = WildcardManager(wildcards)
    expanded: list[Prompt] = []
    for template in templates:
        check_wildcards(manager, template)
        try:
            if count:
                texts = RandomPromptGenerator(manager).generate(template, count,
                                                                seeds=[seed + i for i in range(count)])
            else:
                texts = CombinatorialPromptGenerator(manager).generate(template, max_prompts=MAX_PROMPTS + 1)
        except ParseBaseException as error:
            raise InvalidInput(f"The prompt {template[:60]!r} cannot be read as a template (unbalanced {{ }} or |, "
                               f"or __ that names no wildcard): {error}.") from None
        expanded.extend(Prompt(" ".join(str(text).split()), template) for text in texts)
        if len(expanded) > MAX_PROMPTS:
            raise InvalidInput(f"These prompts expand to more than {MAX_PROMPTS} images: use random picks "
                               "or fewer choices.")
    return expanded


def check_wildcards(manager: Any, template: str) -> None:
    """Refuse a template naming a wildcard, directly or inside another wildcard's values, that has no values or
    leads back to itself (a file naming itself, ``a`` → ``b`` → ``a``), before anything is generated."""
    checked: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            chain = " → ".join(f"__{step}__" for step in (*path[path.index(name):], name))
            raise InvalidInput(f"The wildcard __{name}__ leads back to itself ({chain}): remove that reference "
                               f"from the wildcard {path[-1]}.")
        if name in checked:
            return
        values = manager.get_values(name)
        if not values:
            where = f" (named in __{path[-1]}__)" if path else ""
            raise InvalidInput(f"The wildcard __{name}__{where} has no values: an admin adds them in Settings "
                               f"(wildcards/{name}.txt in the data folder).")
        for value in values:
            for nested in WILDCARD.findall(str(value)):
                visit(nested, (*path, name))
        checked.add(name)

    for name in WILDCARD.findall(template):
        visit(name, ())
