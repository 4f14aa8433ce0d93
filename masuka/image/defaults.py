"""Studio defaults for new images: model, steps, size and file format.

They live in ``settings.json`` in the data dir (nothing secret in it; API keys are in :mod:`masuka.key_store`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masuka.config import Config, on_zerogpu
from masuka.errors import InvalidInput, MasukaError
from masuka.image.limits import MAX_SIDE, MAX_STEPS, MIN_SIDE
from masuka.settings_file import load_settings, save_settings
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
    ones: :func:`~masuka.settings_file.load_settings`). A value today's checks refuse (a size an older MASUKA
    allowed) is left out, with a log line: the model's own default serves instead."""
    defaults = load_settings(_settings_path(config)).get("defaults")
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
    of the model's size step (of 16, which suits every model, when no model is given). On a ZeroGPU Space,
    defaults whose image would be too long for one GPU call are refused with the reason a Generate would get."""
    spec = _spec(model, refuse=True)
    given = {"steps": steps, "width": width, "height": height, "output_format": output_format}
    defaults = Defaults(model=model or "", **{name: _checked(name, given[name], spec) for name in CHECKED})
    _fits_space(config, defaults, spec)
    save_settings(_settings_path(config), {"defaults": asdict(defaults)})
    return defaults


def _fits_space(config: Config, defaults: Defaults, spec: ModelSpec | None) -> None:
    """On ZeroGPU, :class:`InvalidInput` when a Generate from the Image tab as the defaults fill it (on the
    default model, else the Space's) would be refused as too long for one GPU call."""
    from masuka.image.aid_settings import load_aid_settings
    from masuka.zerogpu import image_seconds, space_spec

    spec = spec or space_spec()
    if not on_zerogpu() or spec is None:
        return
    image_seconds(spec, steps=defaults.steps or spec.steps, width=defaults.width or spec.width,
                  height=defaults.height or spec.height, safety=load_aid_settings(config).safety_mandatory)


def space_note(defaults: Defaults) -> str:
    """On ZeroGPU, what a saved default model that is not the Space's costs (it loads inside every GPU call);
    "" otherwise."""
    from masuka.zerogpu import LOAD_SECONDS_PER_GB, image_load_gb, is_space_model

    spec = _spec(defaults.model, refuse=False)
    if not on_zerogpu() or spec is None or is_space_model(spec.id):
        return ""
    seconds = round(image_load_gb(spec.id, spec.vram_gb) * LOAD_SECONDS_PER_GB)
    return (f"{spec.id} is not this Space's model (MASUKA_SPACE_MODEL): the Image tab opens on it, and it loads "
            f"inside every GPU call, about {seconds} s more for each request.")


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
