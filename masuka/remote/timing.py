"""Timing knobs of the remote video providers and remote training, from ``MASUKA_VIDEO_*`` variables (named
after the video providers, which came first; tests and proxies shorten them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from masuka.config import env_number

#: how long a paid job waits before asking a provider it could not ask again (no ``poll_s`` override)
UNREACHABLE_WAIT_S = 30.0
#: what a paid job's row adds to the error while it waits for its provider
KEPT = "Still trying; the job is kept."


def knob(default: float | None, minimum: float = 0) -> Any:
    """A field with its variable's smallest sensible value."""
    return field(default=default, metadata={"minimum": minimum})


@dataclass(frozen=True)
class RemoteSettings:
    """Retry, polling and health limits; every field has a ``MASUKA_VIDEO_<FIELD>`` variable, refused below its
    minimum (no attempts would never ask, a zero poll or timeout would hammer a provider or fail every call)."""

    poll_s: float | None = knob(None, 0.01)  # overrides every provider's default poll interval when set
    attempts: int = knob(5, 1)  # tries per poll or download before the provider counts as unreachable
    backoff_s: float = knob(1.0)  # first back-off; doubles each try, with jitter
    max_wait_s: float = knob(60.0)  # longest single wait, even when a provider asks for more
    unhealthy_after: int = knob(5, 1)  # consecutive failures before a provider is marked unhealthy
    unhealthy_s: float = knob(300.0)  # how long it stays marked
    timeout_s: float = knob(60.0, 0.1)  # HTTP timeout of one request

    @classmethod
    def from_env(cls) -> "RemoteSettings":
        defaults = cls()
        return cls(**{each.name: env_number(f"MASUKA_VIDEO_{each.name.upper()}", getattr(defaults, each.name),
                                            int if each.type == "int" else float, each.metadata["minimum"])
                      for each in fields(cls)})

    def retry_wait_s(self) -> float:
        """How long a paid job waits before asking a provider it could not ask (unreachable, no key) again."""
        return UNREACHABLE_WAIT_S if self.poll_s is None else self.poll_s * 10
