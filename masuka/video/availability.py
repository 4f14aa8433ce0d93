"""What can be used: the providers this host offers (no local model on a ZeroGPU Space), and the models a
provider refused as gone or not available to a key: remembered per key for :data:`MARK_TTL` (a day), so the next
jobs with that key go straight to the user's fallback instead of asking again.

A key is remembered by a short SHA-256 fingerprint, never by its value; a new key starts with a clean slate, and
saving or testing a key in Settings (``keys test`` in the CLI) clears what was remembered for it
(:func:`forget_unavailable`): a refusal that came from a wrong base URL, say, is not kept once it is fixed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from masuka.config import on_zerogpu
from masuka.errors import InvalidInput
from masuka.store import Store, now
from masuka.video.catalog import LOCAL, REMOTE_PROVIDERS, video_catalog
from masuka.zerogpu import ELSEWHERE, max_seconds


def offered_providers() -> dict[str, dict]:
    """The providers (catalog entries by key) a request may name here: the local model is left out on a ZeroGPU
    Space, which refuses it (:func:`refuse_local_video`)."""
    return {key: entry for key, entry in video_catalog().items() if key != LOCAL or not on_zerogpu()}


def refuse_local_video() -> None:
    """:class:`InvalidInput` on ZeroGPU for the local video model: a clip takes minutes on one GPU and the
    app's process has no GPU there; the remote providers make videos on their own GPUs."""
    if on_zerogpu():
        names = ", ".join(video_catalog()[name]["name"] for name in REMOTE_PROVIDERS)
        raise InvalidInput(f"Local video cannot run on this ZeroGPU Space: a clip takes minutes on one GPU, one "
                           f"ZeroGPU call at most {max_seconds()} s. Use a remote provider instead ({names}; each "
                           f"needs that service's API key), or make local videos {ELSEWHERE}.")


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


#: how long a provider's "this model is gone for this key" is believed before the model is asked for again
MARK_TTL = timedelta(days=1)


def mark_unavailable(store: Store, provider: str, model: str, key: str, reason: str) -> None:
    """Remember for :data:`MARK_TTL` that ``provider`` refused ``model`` to ``key`` as gone (``reason``)."""
    with store.transaction():
        store.delete_where("model_availability", "provider = ? and model = ? and key_id = ?",
                           [provider, model, key_id(key)])
        store.insert("model_availability", {"provider": provider, "model": model, "key_id": key_id(key),
                                            "reason": reason[:500], "created_at": now()})


def unavailable(store: Store, provider: str, model: str, key: str | None) -> str | None:
    """Why ``model`` is not available to ``key`` (the provider's answer, within :data:`MARK_TTL`), or None when
    nothing says so."""
    if not key:
        return None
    since = (datetime.now(UTC) - MARK_TTL).isoformat(timespec="milliseconds")
    rows = store.find("model_availability", "provider = ? and model = ? and key_id = ? and created_at > ?",
                      [provider, model, key_id(key), since], limit=1)
    return rows[0]["reason"] if rows else None


def forget_unavailable(store: Store, provider: str, key: str | None) -> int:
    """Forget every model ``provider`` refused to ``key`` (its key was saved or tested again); returns how many."""
    if not key:
        return 0
    where, args = "provider = ? and key_id = ?", [provider, key_id(key)]
    with store.transaction():
        count = store.count("model_availability", where, args)
        store.delete_where("model_availability", where, args)
    return count

