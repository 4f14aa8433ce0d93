"""Using a character's LoRA: the picker offers it at its default weight, and picking it writes its trigger word
into the prompt.

The LoRA library row of a character's LoRA carries two entries in its ``metadata``: the character's name and the
default weight (0.73 unless the user chose another when training).
"""

from __future__ import annotations

from masuka.datasets.caption_template import has_trigger
from masuka.image.generate import parse_lora
from masuka.loras.library import list_loras
from masuka.studio import Studio

CHARACTER_KEY = "masuka.character"
DEFAULT_WEIGHT_KEY = "masuka.default_weight"


def picker_value(row: dict) -> str:
    """What a LoRA picker puts in the form for a library row: ``name``, or ``name:0.73`` with a default weight."""
    weight = (row.get("metadata") or {}).get(DEFAULT_WEIGHT_KEY)
    return f"{row['name']}:{weight}" if weight else row["name"]


def with_triggers(studio: Studio, owner: str, prompt: str, picked: list[str]) -> str:
    """``prompt`` with the trigger word of every picked character LoRA put in front, unless already there."""
    chosen = {parse_lora(value)[0] for value in picked or []}
    triggers = [row["trigger"] for row in list_loras(studio, owner)
                if row["name"] in chosen and (row.get("metadata") or {}).get(CHARACTER_KEY) and row["trigger"]]
    missing = [trigger for trigger in triggers if not has_trigger(prompt or "", trigger)]
    if not missing:
        return prompt
    return ", ".join([*missing, prompt.strip()] if (prompt or "").strip() else missing)
