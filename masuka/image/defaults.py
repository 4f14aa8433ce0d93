"""Studio defaults for new images: model, steps, size and file format.

They live in ``settings.json`` in the data dir (nothing secret in it; API keys are in :mod:`masuka.key_store`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka.config import Config
from masuka.errors import InvalidInput, MasukaError
from masuka.image.limits import MAX_SIDE, MAX_STEPS, MIN_SIDE
from masuka.validation import whole_number

if TYPE_CHECKING:
    from masuka.models.catalog import ModelSpec

log = logging.getLogger(__name__)
FORMATS = ("PNG", "WebP", "JPEG")
#: the defaults checked as they are saved and loaded (the model is checked where it is used)
CHECKED = ("steps", "width", "height", "output_format")
_TOLD: set[tuple[str, str]] = set()  # the saved values a log line already said were left out
#: the size step a default width or height keeps when no default model is saved: every architecture's divides it
ANY_MODEL_MULTIPLE = 16


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
    """The saved defaults (a missing or unreadable file, or one without a ``defaults`` object, gives the built-in
    ones). A value today's checks refuse (a size an older MASUKA allowed) is left out, with a log line: the model's
    own default serves instead."""
    try:
        saved = json.loads(_settings_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    defaults = saved.get("defaults") if isinstance(saved, dict) else None
    if not isinstance(defaults, dict):
        return Defaults()
    model = defaults["model"] if isinstance(defaults.get("model"), str) else ""
    spec = _spec(model, refuse=False)
    values: dict[str, Any] = {}
    for name in CHECKED:
        if name in defaults:
            try:
                values[name] = _checked(name, defaults[name], spec)
            except InvalidInput as error:
                if (name, repr(defaults[name])) not in _TOLD:  # once: defaults are read for every image
                    _TOLD.add((name, repr(defaults[name])))
                    log.warning("saved default %s left out: %s", name, error)
    return Defaults(model=model, **values)


def save_defaults(config: Config, model: str = "", steps: float | None = None, width: float | None = None,
                  height: float | None = None, output_format: str = "PNG") -> Defaults:
    """Check and save new defaults; :class:`InvalidInput` names a bad value. A width or height must be a multiple
    of the model's size step (of 16, which suits every model, when no model is given)."""
    spec = _spec(model, refuse=True)
    given = {"steps": steps, "width": width, "height": height, "output_format": output_format}
    defaults = Defaults(model=model or "", **{name: _checked(name, given[name], spec) for name in CHECKED})
    path = _settings_path(config)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"defaults": asdict(defaults)}, indent=2), encoding="utf-8")
    os.replace(partial, path)
    return defaults


def _spec(model: str, refuse: bool) -> ModelSpec | None:
    """The default model's spec (for its size step); None without one, or for one not found when not ``refuse``."""
    from masuka.models.catalog import resolve_image_model

    try:
        return resolve_image_model(model) if model else None
    except MasukaError:
        if refuse:
            raise
        return None


def _checked(name: str, value: Any, spec: ModelSpec | None) -> Any:
    """One default (of :data:`CHECKED`) as it may be saved, or :class:`InvalidInput` saying why not."""
    if name == "output_format":
        if value not in FORMATS:
            raise InvalidInput(f"Output format must be one of {', '.join(FORMATS)} (got {value!r}).")
        return value
    if name == "steps":
        return _optional_int("steps", value, 1, MAX_STEPS)
    return _side(name, value, spec)


def _side(name: str, value: float | None, spec: ModelSpec | None) -> int | None:
    """An optional default width or height, a multiple of the model's size step (16 without a model)."""
    side = _optional_int(name, value, MIN_SIDE, MAX_SIDE)
    multiple = spec.size_multiple if spec else ANY_MODEL_MULTIPLE
    if side is not None and side % multiple:
        where = f" for {spec.id}" if spec else ", the step every model accepts"
        raise InvalidInput(f"Default {name} must be a multiple of {multiple}{where} (got {side}; try "
                           f"{max(multiple, round(side / multiple) * multiple)}).")
    return side


def _optional_int(name: str, value: float | None, low: int, high: int) -> int | None:
    """An empty value (None, blank, 0) as None, else a whole number in ``[low, high]``."""
    if value in (None, "", 0):
        return None
    return whole_number(f"default {name}", value, low, high)
