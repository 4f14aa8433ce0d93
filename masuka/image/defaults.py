"""Studio defaults for new images: model, steps, size and file format.

They live in ``settings.json`` in the data dir (nothing secret in it; API keys are in :mod:`masuka.key_store`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.image.limits import MAX_SIDE, MAX_STEPS, MIN_SIDE

FORMATS = ("PNG", "WebP", "JPEG")


@dataclass
class Defaults:
    """What a new image starts from; empty values fall back to the model's own defaults."""

    model: str = ""
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    output_format: str = "PNG"


def _settings_path(config: Config) -> Path:
    return config.data_dir / "settings.json"


def load_defaults(config: Config) -> Defaults:
    """The saved defaults (a missing or unreadable file gives the built-in ones)."""
    try:
        saved = json.loads(_settings_path(config).read_text(encoding="utf-8")).get("defaults", {})
    except (OSError, ValueError, AttributeError):
        saved = {}
    known = {f.name for f in fields(Defaults)}
    return Defaults(**{k: v for k, v in saved.items() if k in known})


def save_defaults(config: Config, model: str = "", steps: float | None = None, width: float | None = None,
                  height: float | None = None, output_format: str = "PNG") -> Defaults:
    """Check and save new defaults; :class:`InvalidInput` names a bad value."""
    from masuka.models.catalog import resolve_image_model

    if output_format not in FORMATS:
        raise InvalidInput(f"Output format must be one of {', '.join(FORMATS)} (got {output_format!r}).")
    if model:
        resolve_image_model(model)
    defaults = Defaults(model=model or "", steps=_optional_int("steps", steps, 1, MAX_STEPS),
                        width=_optional_int("width", width, MIN_SIDE, MAX_SIDE),
                        height=_optional_int("height", height, MIN_SIDE, MAX_SIDE), output_format=output_format)
    path = _settings_path(config)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"defaults": asdict(defaults)}, indent=2), encoding="utf-8")
    os.replace(partial, path)
    return defaults


def _optional_int(name: str, value: float | None, low: int, high: int) -> int | None:
    if value in (None, "", 0):
        return None
    number = int(value)
    if not low <= number <= high or number != float(value):
        raise InvalidInput(f"Default {name} must be a whole number between {low} and {high} (got {value}).")
    return number
