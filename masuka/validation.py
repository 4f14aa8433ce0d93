"""Checks on numbers people type, shared by every form and command."""

from __future__ import annotations

from typing import Any

from masuka.errors import InvalidInput


def whole_number(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int within ``[low, high]``, else :class:`InvalidInput` naming ``name`` and the range."""
    label = name[:1].upper() + name[1:]
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{label} must be a whole number (got {value!r}).") from None
    if not low <= number <= high:
        raise InvalidInput(f"{label} must be between {low} and {high} (got {number}).")
    return number
