"""Provider health: consecutive failures per provider, shared by every process through the store.

After ``unhealthy_after`` failures in a row (server errors, timeouts, unreachable) a provider is marked
unhealthy for ``unhealthy_s`` seconds: new jobs go to the user's fallback provider or are refused with a
message, while jobs already paid for keep polling. A success clears the count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from masuka.remote.timing import RemoteSettings
from masuka.store import Store, now


class HealthTracker:
    def __init__(self, store: Store, settings: RemoteSettings):
        self.store = store
        self.settings = settings

    def failure(self, provider: str, error: str) -> None:
        with self.store.transaction():
            row = self._row(provider)
            failures = (row["failures"] or 0) + 1 if row else 1
            fields = {"failures": failures, "last_error": error[:300], "updated_at": now()}
            if failures >= self.settings.unhealthy_after:
                until = datetime.now(UTC) + timedelta(seconds=self.settings.unhealthy_s)
                fields["unhealthy_until"] = until.isoformat(timespec="milliseconds")
            self._save(row, provider, fields)

    def success(self, provider: str) -> None:
        row = self._row(provider)
        if row and (row["failures"] or row["unhealthy_until"]):
            self._save(row, provider, {"failures": 0, "unhealthy_until": None, "updated_at": now()})

    def unhealthy(self, provider: str) -> str | None:
        """A sentence saying why and until when, or None when the provider may be used."""
        row = self._row(provider)
        if not row or not row["unhealthy_until"] or row["unhealthy_until"] <= now():
            return None
        return (f"{provider} is marked unhealthy until {row['unhealthy_until'][11:19]} UTC after "
                f"{row['failures']} failures in a row (last: {row['last_error']}).")

    def report(self) -> dict[str, str]:
        """Provider -> message, for every provider marked unhealthy now."""
        rows = self.store.find("provider_health", order_by="provider")
        return {r["provider"]: msg for r in rows if (msg := self.unhealthy(r["provider"]))}

    def _row(self, provider: str) -> dict | None:
        rows = self.store.find("provider_health", "provider = ?", [provider], limit=1)
        return rows[0] if rows else None

    def _save(self, row: dict | None, provider: str, fields: dict) -> None:
        if row:
            self.store.update("provider_health", row["id"], **fields)
        else:
            self.store.insert("provider_health", {"provider": provider, **fields})
