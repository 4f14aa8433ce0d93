"""The key file: API keys saved from the Settings tab, in ``secrets.json`` in the data dir, readable by the
owner only. A service's environment variables win over the file.

Keys are never logged, never written into rows or metadata, and shown back only masked (:func:`mask`).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from masuka.services import Service

KEY_FILE = "secrets.json"


class KeyStore:
    """The keys of one data dir; one instance per studio, so that saves never interleave."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / KEY_FILE
        self._lock = threading.Lock()

    def get(self, service: Service) -> str | None:
        """The key from the environment first, else from the file."""
        for env in service.key_env:
            if os.environ.get(env):
                return os.environ[env]
        return self._read().get(service.name) or None

    def source(self, service: Service) -> str | None:
        """Where the key comes from: ``env``, ``file`` or None."""
        if any(os.environ.get(env) for env in service.key_env):
            return "env"
        return "file" if self._read().get(service.name) else None

    def set(self, service: Service, value: str | None) -> None:
        """Save (or with an empty value, forget) a key; the file is created 0600."""
        with self._lock:
            keys = self._read()
            if value and value.strip():
                keys[service.name] = value.strip()
            else:
                keys.pop(service.name, None)
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
