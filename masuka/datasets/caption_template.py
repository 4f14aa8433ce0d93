"""Caption text rules: the template that joins trigger word and caption, and trigger-word coverage."""

from __future__ import annotations

import re
import string

from masuka.errors import InvalidInput

DEFAULT_TEMPLATE = "photo of {trigger}, {caption}"
FIELDS = {"trigger", "caption"}
MAX_TRIGGER_CHARS = 64
NOT_IN_FOLDER_NAMES = '/\\:*?"<>|'  # path separators, and what Windows refuses


def check_template(template: str | None) -> str:
    """A usable template (``{caption}`` required, ``{trigger}`` optional), or :class:`InvalidInput`."""
    template = (template or "").strip() or DEFAULT_TEMPLATE
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as error:
        raise InvalidInput(f"The caption template is malformed ({error}); write e.g. {DEFAULT_TEMPLATE!r}.") \
            from None
    if any(spec or conversion for _, spec, conversion in fields):
        raise InvalidInput("The caption template may not format its fields (like {caption:>80} or {caption!r}): "
                           "write {trigger} and {caption} as they are.")
    names = {name for name, _, _ in fields}
    if "caption" not in names:
        raise InvalidInput(f"The caption template must contain {{caption}}, e.g. {DEFAULT_TEMPLATE!r}.")
    if names - FIELDS:
        unknown = ", ".join(sorted("{" + n + "}" for n in names - FIELDS))
        raise InvalidInput(f"The caption template may only use {{trigger}} and {{caption}} (found {unknown}).")
    return template


def check_trigger(trigger: str | None) -> str:
    """A usable trigger word (may be empty), or :class:`InvalidInput`: it goes into captions and names the kohya
    export folder (``10_<trigger>``), so characters a folder name may not hold are refused."""
    trigger = (trigger or "").strip()
    if len(trigger) > MAX_TRIGGER_CHARS or not trigger.isprintable() or any(c in trigger for c in "{}"):
        raise InvalidInput(f"The trigger word must be one line of at most {MAX_TRIGGER_CHARS} characters, "
                           "without braces or invisible characters.")
    unsafe = [c for c in NOT_IN_FOLDER_NAMES if c in trigger]
    if unsafe:
        raise InvalidInput(f"The trigger word names the exported image folder (10_<trigger>), so it may not "
                           f"contain {' '.join(NOT_IN_FOLDER_NAMES)} (found {' '.join(unsafe)}).")
    return trigger


def apply_template(template: str, trigger: str, caption: str) -> str:
    """The final training caption; without a trigger word the caption stands alone, and vice versa."""
    caption = caption.strip()
    if not trigger or not caption:
        return caption or trigger
    return check_template(template).format(trigger=trigger, caption=caption).strip()


def has_trigger(caption: str, trigger: str) -> bool:
    """Whether ``caption`` contains the trigger word as a whole word (any case)."""
    return bool(trigger) and re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE) is not None
