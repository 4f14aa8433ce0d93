"""Models a provider refused as gone or not available to a key: remembered per key, so the next job with that
key goes straight to the user's fallback instead of asking again.

A key is remembered by a short SHA-256 fingerprint, never by its value; a new key starts with a clean slate.
"""

from __future__ import annotations

import hashlib

from masuka.store import Store


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def mark_unavailable(store: Store, provider: str, model: str, key: str, reason: str) -> None:
    if unavailable(store, provider, model, key) is None:
        store.insert("model_availability", {"provider": provider, "model": model, "key_id": key_id(key),
                                            "reason": reason[:500]})


def unavailable(store: Store, provider: str, model: str, key: str | None) -> str | None:
    """Why ``model`` is not available to ``key`` (the provider's answer), or None when nothing says so."""
    if not key:
        return None
    rows = store.find("model_availability", "provider = ? and model = ? and key_id = ?",
                      [provider, model, key_id(key)], limit=1)
    return rows[0]["reason"] if rows else None
