"""Studio settings: defaults for new images (model, steps, size, file format) and API keys with a live check.

Defaults live in ``settings.json`` in the data dir (nothing secret in it); keys live in the owner-only key file
(:class:`masuka.keys.KeyStore`). A key check makes one cheap authenticated request and reports the outcome
without ever repeating the key.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from masuka.config import Config
from masuka.errors import InvalidInput
from masuka.keys import KEY_ENV, mask
from masuka.services import CIVITAI, HUGGINGFACE, NGROK, service, services

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
FORMATS = ("PNG", "WebP", "JPEG")
NGROK_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{20,120}$")
CHECK_TIMEOUT_S = 15.0


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
    from masuka.image.generate import MAX_SIDE, MAX_STEPS, MIN_SIDE
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


# -- API keys ---------------------------------------------------------------------------------------
def key_labels() -> dict[str, str]:
    """Key name -> the label the Settings tab shows, from the service declarations."""
    return {name: declared.label for name, declared in services().items()}


def key_table(config: Config) -> list[dict]:
    """Each key: its label, where it comes from (env/file/none) and its masked form."""
    keys = config.keys
    return [{"name": name, "label": service(name).label, "source": keys.source(name) or "not set",
             "masked": mask(keys.get(name)), "env": " or ".join(KEY_ENV[name])} for name in KEY_ENV]


def save_key(config: Config, name: str, value: str | None) -> str:
    """Save (or, with an empty value, forget) a key in the key file; returns a message without the key."""
    if name not in KEY_ENV:
        raise InvalidInput(f"Unknown key {name!r}: choose one of {', '.join(KEY_ENV)}.")
    value = (value or "").strip()
    if any(ch.isspace() for ch in value):
        raise InvalidInput(f"The {service(name).label} key contains spaces or line breaks: paste the key alone.")
    config.keys.set(name, value or None)
    if not value:
        return f"{service(name).label} key removed from the key file."
    shadowed = " (the environment variable still takes precedence)" if config.keys.source(name) == "env" else ""
    return f"{service(name).label} key saved: {mask(value)}{shadowed}."


def hub_endpoint() -> str:
    """The Hugging Face Hub base URL (``HF_ENDPOINT`` when set, read at call time)."""
    return HUGGINGFACE.base_url()


def civitai_base_url() -> str:
    return CIVITAI.base_url()


def check_key(config: Config, name: str) -> tuple[bool, str]:
    """Try the key against its service; ``(ok, message)``. The message never contains the key."""
    if name not in KEY_ENV:
        raise InvalidInput(f"Unknown key {name!r}: choose one of {', '.join(KEY_ENV)}.")
    declared = service(name)
    label = declared.label
    key = config.keys.get(name)
    if not key:
        return False, f"No {label} key is set: paste it here or set {KEY_ENV[name][0]}."
    if name == NGROK.name:
        if NGROK_TOKEN.match(key):
            return True, f"The ngrok token {mask(key)} looks valid (it is checked by ngrok when a tunnel opens)."
        return False, f"The ngrok token {mask(key)} does not look like an ngrok authtoken."
    import httpx

    url, headers = declared.check_request(key)
    try:
        response = httpx.get(url, headers=headers, timeout=CHECK_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as error:
        log.info("key check for %s could not reach %s: %s", name, httpx.URL(url).host, type(error).__name__)
        return False, f"{label} could not be reached ({type(error).__name__}): check the network and try again."
    status = response.status_code
    if status in (401, 403):
        return False, f"{label} refused the key {mask(key)} (HTTP {status}): it is wrong, revoked or lacks access."
    if status in declared.check_ok:
        return True, f"{label} accepted the key {mask(key)}."
    if status >= 400:
        return False, f"{label} answered HTTP {status}; the key {mask(key)} could not be confirmed."
    return True, f"{label} accepted the key {mask(key)}{_who(name, response)}."


def _who(name: str, response: httpx.Response) -> str:
    """A short detail from a successful check (account name, model count), when the answer has one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if name in ("huggingface", "civitai") and (body.get("name") or body.get("username")):
        return f" (signed in as {body.get('name') or body.get('username')})"
    models = body.get("data") or body.get("models")
    return f" ({len(models)} models visible)" if isinstance(models, list) else ""
