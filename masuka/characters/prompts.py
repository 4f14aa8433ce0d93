"""The prompt set of a character's views: data (``assets/character_views.json``), picked with a seed.

Each view prompt combines one value of every axis: angle (front, 3/4, profile, back), framing (close-up, half,
full body), expression, lighting, outfit and background. The chosen list is saved with the character, where the
user may edit it.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.validation import plain_text, whole_number

VIEWS_FILE = Path(__file__).resolve().parents[2] / "assets" / "character_views.json"
DEFAULT_VIEWS = 24
MAX_VIEWS = 200
MAX_PROMPT_CHARS = 500


@cache
def view_axes() -> dict[str, list[str]]:
    """Axis name -> its values, in the order they are written into a prompt."""
    return json.loads(VIEWS_FILE.read_text(encoding="utf-8"))


def pick_prompts(count: int = DEFAULT_VIEWS, seed: int = 0) -> list[str]:
    """``count`` view prompts; angles and framings go round in turn so every one is covered, the rest is drawn."""
    count = whole_number("the number of views", count, 1, MAX_VIEWS)
    axes = view_axes()
    rng = random.Random(seed)
    prompts = []
    for index in range(count):
        parts = [axes["angle"][index % len(axes["angle"])],
                 axes["framing"][(index // len(axes["angle"])) % len(axes["framing"])]]
        parts += [rng.choice(values) for name, values in axes.items() if name not in ("angle", "framing")]
        prompts.append(", ".join(parts))
    return prompts


def check_prompts(prompts: list[str] | str) -> list[str]:
    """An edited prompt set (a list, or text with one prompt a line) without blank lines; refused when empty."""
    lines = prompts.splitlines() if isinstance(prompts, str) else list(prompts)
    cleaned = [plain_text("a view prompt", line, MAX_PROMPT_CHARS).strip() for line in lines]
    cleaned = [line for line in cleaned if line]
    if not cleaned:
        raise InvalidInput("The prompt set is empty: write one view prompt a line.")
    if len(cleaned) > MAX_VIEWS:
        raise InvalidInput(f"The prompt set has {len(cleaned)} prompts; at most {MAX_VIEWS}.")
    return cleaned
