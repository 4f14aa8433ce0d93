"""Timing knobs of the remote video providers and remote training, from ``MASUKA_VIDEO_*`` variables (named
after the video providers, which came first; tests and proxies shorten them)."""

from __future__ import annotations

from dataclasses import dataclass

from masuka.config import env_number

#: how long a paid job waits before asking a provider it could not ask again (no ``poll_s`` override)
UNREACHABLE_WAIT_S = 30.0
#: what a paid job's row adds to the error while it waits for its provider
KEPT = "Still trying; the job is kept."


@dataclass(frozen=True)
class RemoteSettings:
    """Retry, polling and health limits; every field has a ``MASUKA_VIDEO_<FIELD>`` variable."""

    poll_s: float | None = None  # overrides every provider's default poll interval when set
    attempts: int = 5  # tries per poll or download before the provider counts as unreachable
    backoff_s: float = 1.0  # first back-off; doubles each try, with jitter
    max_wait_s: float = 60.0  # longest single wait, even when a provider asks for more
    unhealthy_after: int = 5  # consecutive failures before a provider is marked unhealthy
    unhealthy_s: float = 300.0  # how long it stays marked
    timeout_s: float = 60.0  # HTTP timeout of one request

    @classmethod
    def from_env(cls) -> "RemoteSettings":
        values = {}
        for name, field in cls.__dataclass_fields__.items():
            kind = int if field.type == "int" else float
            if not (field.default is None or isinstance(field.default, (int, float))):
                raise TypeError(f"RemoteSettings.{name} needs a number or None as its default")
            values[name] = env_number(f"MASUKA_VIDEO_{name.upper()}", field.default, kind)
        return cls(**values)

    def retry_wait_s(self) -> float:
        """How long a paid job waits before asking a provider it could not ask (unreachable, no key) again."""
        return UNREACHABLE_WAIT_S if self.poll_s is None else self.poll_s * 10
