"""API keys: from the environment or an owner-only (0600) key file in the data dir.

Keys are never logged, never written into rows or metadata, and shown back only masked.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path


class _KeyVariables(Mapping):
    """Key name -> environment variables that may hold it, in order of preference; read from the service
    declarations (:mod:`masuka.services`) on first use."""

    @staticmethod
    def _table() -> dict[str, tuple[str, ...]]:
        from masuka.services import services

        return {name: service.key_env for name, service in services().items()}

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
