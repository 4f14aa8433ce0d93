"""API keys: from the environment or an owner-only (0600) key file in the data dir, and a live check of each.

Keys are never logged, never written into rows or metadata, and shown back only masked. A key check makes one
cheap authenticated request and reports the outcome without ever repeating the key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from masuka.errors import InvalidInput
from masuka.services import CIVITAI, HUGGINGFACE, NGROK, service, services

if TYPE_CHECKING:
    import httpx

    from masuka.config import Config  # config reads the key file through KeyStore

log = logging.getLogger(__name__)
NGROK_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{20,120}$")
CHECK_TIMEOUT_S = 15.0


class _KeyVariables(Mapping):
    """Key name -> environment variables that may hold it, in order of preference; read from the service
    declarations (:mod:`masuka.services`) at each use."""

    @staticmethod
    def _table() -> dict[str, tuple[str, ...]]:
        return {name: declared.key_env for name, declared in services().items()}

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


KEY_ENV: Mapping[str, tuple[str, ...]] = _KeyVariables()


class KeyStore:
    """Keys saved from the Settings tab, in ``secrets.json`` readable by the owner only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        """The key from the environment first, else from the file."""
        for env in KEY_ENV[name]:
            if os.environ.get(env):
                return os.environ[env]
        return self._read().get(name) or None

    def source(self, name: str) -> str | None:
        """Where the key comes from: ``env``, ``file`` or None."""
        if any(os.environ.get(env) for env in KEY_ENV[name]):
            return "env"
        return "file" if self._read().get(name) else None

    def set(self, name: str, value: str | None) -> None:
        """Save (or with an empty value, forget) a key; the file is created 0600."""
        if name not in KEY_ENV:
            raise KeyError(name)
        with self._lock:
            keys = self._read()
            if value and value.strip():
                keys[name] = value.strip()
            else:
                keys.pop(name, None)
            partial = self.path.with_suffix(".part")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(keys, handle)
            os.chmod(partial, 0o600)
            os.replace(partial, self.path)

    def _read(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError:
            return {}


def mask(secret: str | None) -> str:
    """Show only the last 4 characters."""
    if not secret:
        return ""
    return "•" * 8 + (secret[-4:] if len(secret) > 8 else "")


# -- the Settings tab's key table and checks ---------------------------------------------------------
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
