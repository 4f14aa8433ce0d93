"""Checks on numbers and text people type, shared by every form and command."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from masuka.errors import InvalidInput


def whole_number(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int within ``[low, high]``, else :class:`InvalidInput` naming ``name`` and the range."""
    label = name[:1].upper() + name[1:]
    try:
        number = int(value)
        if not isinstance(value, str) and number != value:  # 2.5; compared exactly, as a float loses big numbers
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{label} must be a whole number (got {value!r}).") from None
    if not low <= number <= high:
        raise InvalidInput(f"{label} must be between {low} and {high} (got {number}).")
    return number


MAX_PAGE = 10**9  # any page's offset stays a SQLite integer


def page_number(value: Any) -> int:
    """A Page box's number (empty: page 1), refused naming the Page when a fraction or below 1 (never rounded);
    a page past the end is the caller's to clamp."""
    return 1 if value is None else whole_number("page", value, 1, MAX_PAGE)


#: Characters that hide or reorder text without showing: bidi embeddings, overrides and isolates, zero-width.
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SURROGATE = re.compile("[\ud800-\udfff]")


def plain_text(name: str, value: Any, max_chars: int) -> str:
    """``value`` as text a person typed (None is empty), else :class:`InvalidInput` saying what is wrong with it.

    Refused: anything but a string, lone UTF-16 surrogates (they cannot be saved), control characters, and
    invisible characters that hide or reorder text (U+200B-U+200F, U+202A-U+202E, U+2066-U+2069).
    """
    label = name[:1].upper() + name[1:]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{label} must be text (got {type(value).__name__}).")
    if SURROGATE.search(value):
        raise InvalidInput(f"{label} contains a broken character (a lone surrogate); retype it.")
    hidden = INVISIBLE.search(value)
    if hidden:
        raise InvalidInput(f"{label} contains an invisible character that hides or reorders text "
                           f"(U+{ord(hidden.group()):04X}); remove it.")
    if CONTROL.search(value):
        raise InvalidInput(f"{label} contains control characters; remove them and try again.")
    if len(value) > max_chars:
        raise InvalidInput(f"{label} is too long (at most {max_chars} characters).")
    return value


def composed(name: str | None) -> str:
    """``name`` (a dataset's, a LoRA's, a character's) as names are kept and compared: trimmed and in Unicode's
    composed form (NFC: ``e`` + a combining accent, as some keyboards type it, is ``é``)."""
    return unicodedata.normalize("NFC", (name or "").strip())


def flag(name: str, value: Any) -> bool:
    """``value`` as a yes/no setting: only true and false are accepted (None is false)."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise InvalidInput(f"{name[:1].upper() + name[1:]} must be true or false (got {value!r}).")


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (``0.8``, ``-1``, ``1e-3``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def weighted(text: str, what: str, named: Callable[[str], bool]) -> tuple[str, float | None]:
    """``REF`` or ``REF:WEIGHT`` (a LoRA, a reference or control picture) -> ``(REF, weight)``, the weight None
    when none is given. After a REF ``named`` takes for a file's whole name (``style.safetensors``, ``r0.png``)
    only a weight may follow the colon: anything else is refused for its weight, not looked for as a file, unless
    the whole text names an existing file (``photo.v2:final.png``)."""
    ref, _, weight = text.rpartition(":")
    if ref and is_number(weight):
        return ref, float(weight)
    if ref and named(ref) and not os.path.exists(text):  # os.path: False, not an error, for a too long name
        raise InvalidInput(f"The weight of {what} {ref!r} is not a number ({weight!r}): write it as {ref}:0.8.")
    return text, None


def has_suffix(path: str) -> bool:
    """Whether ``path`` ends in a file name with a suffix (``pics/r0.png``): a picture's name is whole there."""
    return bool(Path(path).suffix)
