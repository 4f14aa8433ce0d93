"""The key file: API keys saved from the Settings tab, in ``secrets.json`` in the data dir, readable by the
owner only. A service's environment variables win over the file.

Keys are never logged, never written into rows or metadata, and shown back only masked (:func:`mask`). A key
file that cannot be read is never overwritten: reading it raises :class:`InvalidInput` naming it (except for a key
a task can do without, :meth:`KeyStore.optional`), and the next save moves it aside (``secrets.json.bad``) before
writing a new one, so the keys it held can still be recovered.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from masuka.errors import InvalidInput
from masuka.services import Service
from masuka.settings_file import json_problem, move_aside

log = logging.getLogger(__name__)
KEY_FILE = "secrets.json"


class KeyStore:
    """The keys of one data dir; one instance per studio, so that saves never interleave."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / KEY_FILE
        self._lock = threading.Lock()
        self._warned = False

    def get(self, service: Service) -> str | None:
        """The key from the environment first, else from the file."""
        for env in service.key_env:
            if os.environ.get(env):
                return os.environ[env]
        return self._read().get(service.name) or None

    def optional(self, service: Service) -> str | None:
        """:meth:`get` for a key the task can do without (the Hugging Face token, which public and local models
        need not): None when the key file cannot be read, said in a warning naming the file, once until the file
        is read again (:meth:`unreadable` tells a caller why a key it asked for is missing)."""
        try:
            return self.get(service)
        except InvalidInput as error:
            if not self._warned:
                self._warned = True
                log.warning("%s Going on without a %s key.", error, service.label)
            return None

    def source(self, service: Service) -> str | None:
        """Where the key comes from: ``env``, ``file`` or None."""
        if any(os.environ.get(env) for env in service.key_env):
            return "env"
        return "file" if self._read().get(service.name) else None

    def set(self, service: Service, value: str | None) -> Path | None:
        """Save (or with an empty value, forget) a key; the file is created 0600. An unreadable key file is first
        moved aside; returns where it went (None when the file was fine)."""
        with self._lock:
            keys, problem = self._load()
            aside = move_aside(self.path, problem, "key file") if problem else None
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
        return aside

    def unreadable(self) -> str | None:
        """Why the key file cannot be read and what to do, in a sentence naming it; None when it can (or is absent)."""
        problem = self._load()[1]
        return self._unreadable(problem) if problem else None

    def _unreadable(self, problem: str) -> str:
        return (f"The key file {self.path} cannot be read ({problem}): repair it, or save a key in Settings → API "
                f"keys (or `python -m masuka keys set`), which moves it aside to {self.path.name}.bad and starts a "
                "new one.")

    def _read(self) -> dict[str, str]:
        keys, problem = self._load()
        if problem:
            raise InvalidInput(self._unreadable(problem))
        self._warned = False  # read (repaired, or saved anew): a later problem is warned about again
        return keys

    def _load(self) -> tuple[dict[str, str], str | None]:
        """The saved keys, or what is wrong with the file (never quoting its content)."""
        keys, problem = json_problem(self.path)
        if problem or keys is None:
            return {}, problem
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            return {}, "it is not a JSON object of key names and keys"
        return keys, None



def mask(secret: str | None) -> str:
    """Show only the last 4 characters."""
    if not secret:
        return ""
    return "•" * 8 + (secret[-4:] if len(secret) > 8 else "")
