"""A1111's ``<lora:name:weight>`` prompt tags (``<lyco:...>`` too, A1111's alias for them): found in a prompt, and
read in every form A1111 takes."""

from __future__ import annotations

import re

from masuka.errors import InvalidInput

LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)((?::[^:>]*)*)>")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def split_lora_tags(prompt: str, strict: bool = False) -> tuple[str, list[tuple[str, float]]]:
    """The prompt without its ``<lora:...>`` tags, and (name, denoiser weight) per tag, in A1111's every form.

    A tag whose weights are not numbers (``<lora:name:0,8>``, ``<lora:name:abc>``) is refused when ``strict`` (a
    prompt to generate from: A1111 errors on it too); otherwise (a prompt read back from a file) it stays in the
    prompt as text.
    """
    loras: list[tuple[str, float]] = []

    def take(match: re.Match) -> str:
        weight = lora_tag_weight(match.group(2).split(":")[1:])
        if weight is None:
            if strict:
                raise InvalidInput(f"The LoRA tag {match.group(0)} has a weight that is not a number: write the "
                                   f"weight as a number such as 0.8 (<lora:{match.group(1).strip()}:0.8>).")
            return match.group(0)
        loras.append((match.group(1).strip(), weight))
        return ""

    cleaned = LORA_TAG.sub(take, prompt)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), loras


def lora_tag_weight(args: list[str]) -> float | None:
    """The denoiser weight of a tag's arguments (``[]``, ``["0.6"]``, ``["0.6", "0.9"]``, ``["te=0.6", "unet=0.9"]``).

    As A1111: the first positional number is the text encoder's weight, the second the denoiser's (else the
    same); ``te=`` and ``unet=`` name them; ``dyn=`` and other names are accepted and have no effect here.
    """
    positional = [a.strip() for a in args if "=" not in a]
    named = dict(a.strip().split("=", 1) for a in args if "=" in a)
    if not all(NUMBER.fullmatch(v) for v in positional[:2] + [named.get(k, "0") for k in ("te", "unet")]):
        return None
    text_encoder = float(named.get("te", positional[0] if positional else 1.0))
    return float(named.get("unet", positional[1] if len(positional) > 1 else text_encoder))
